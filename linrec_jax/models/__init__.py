"""Sequential recommenders; ``MODELS`` maps a name to its class."""

from linrec_jax.models.bert4rec import BERT4Rec
from linrec_jax.models.sasrec import SASRec

MODELS = {'sasrec': SASRec, 'bert4rec': BERT4Rec}


def make_model(config, num_items: int):
  """The linen model a configuration describes.

  Args:
    config: a ``linrec_jax.config.TrainConfig`` (its model fields are read).
    num_items: real items, ids ``1..num_items``.
  """
  fields = dict(
      num_items=num_items,
      max_len=config.max_len,
      hidden=config.hidden,
      layers=config.layers,
      heads=config.heads,
      ffn=config.ffn,
      dropout=config.dropout,
      attention_dropout=config.attention_dropout,
      attention=config.attention,
      mask_padding=config.mask_padding,
      pre_ln=config.pre_ln,
  )
  if config.model == 'sasrec':
    fields['causal'] = config.causal
  return MODELS[config.model](**fields)


__all__ = ['BERT4Rec', 'MODELS', 'SASRec', 'make_model']
