"""Sequential recommenders; ``MODELS`` maps a name to its class."""

from linrec_jax.layers.config import EncoderConfig, encoder_config
from linrec_jax.models.bert4rec import BERT4Rec
from linrec_jax.models.sasrec import SASRec

MODELS = {'sasrec': SASRec, 'bert4rec': BERT4Rec}


def make_model(config, num_items: int):
  """The linen model a configuration describes.

  Args:
    config: a ``linrec_jax.training.config.TrainConfig`` (its ``model`` and its
      ``EncoderConfig`` fields are read).
    num_items: real items, ids ``1..num_items``.
  """
  return MODELS[config.model](num_items, encoder_config(config))


__all__ = ['BERT4Rec', 'EncoderConfig', 'MODELS', 'SASRec', 'make_model']
