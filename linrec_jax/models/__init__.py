"""Sequential recommenders; ``MODELS`` maps a name to its class."""

from linrec_jax.models.bert4rec import BERT4Rec
from linrec_jax.models.sasrec import SASRec

MODELS = {'sasrec': SASRec, 'bert4rec': BERT4Rec}

__all__ = ['BERT4Rec', 'MODELS', 'SASRec']
