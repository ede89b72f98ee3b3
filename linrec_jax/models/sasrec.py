"""SASRec: a next-item Transformer over item histories, LinRec by default.

Its sizes and choices are one `EncoderConfig` (defaults: the official LinRec
values, hidden 128, 2 layers, 8 heads, FFN 256, dropout 0.2, exact GELU,
LayerNorm eps 1e-12, post-LN, N = 200, causal).
"""

import flax.linen as nn
import jax.numpy as jnp

from linrec_jax.constants import PAD_ID
from linrec_jax.layers.config import EncoderConfig
from linrec_jax.layers.embeddings import SequenceEmbedding
from linrec_jax.layers.encoder import Encoder


class SASRec(nn.Module):
  """Item + position embedding, a block stack, tied output scores.

  ``config.causal=True`` gives the unidirectional next-item model that trains
  on all positions at once. The official LinRec run uses ``causal=False``
  and ``mask_padding=False`` with prefix training (loss on the last position
  only), which is leak-free only in that setup.

  Decode mode (``decode=True``; causal ``attention.RECURRENT_VARIANTS``)
  feeds one new item per user and keeps, in the 'cache' collection, each
  layer's fixed-size attention state and the users' position counters: the
  output after n items equals the full pass over those n items (right
  padded) at position n - 1. ``linrec_jax.serving.streaming`` wraps it.

  Attributes:
    num_items: real items, ids ``1..num_items``; ``PAD_ID`` (0) is padding.
    config: the `EncoderConfig`.
  """

  num_items: int
  config: EncoderConfig = EncoderConfig()

  def setup(self):
    self.embed = SequenceEmbedding(self.num_items + 1, self.config)
    self.encoder = Encoder(self.config)

  def __call__(self, inputs, deterministic=True, decode=False, positions=None):
    """Encodes item histories.

    Args:
      inputs: int32 ``[B, L]`` item ids, ``PAD_ID`` at padding, ``L <=
        max_len``. Positions are array indices, so left and right padding
        give the real items different positions (see ``layers.embeddings``).
      deterministic: if False, applies dropout (needs a 'dropout' rng).
      decode: ``L = 1``: each user's next item, given the cached state of
        the items before it (``mutable=['cache']``; see the class
        docstring).
      positions: optional int ``[B, T]``: return the states at these
        positions only, computing the last block only there
        (``layers.encoder``).

    Returns:
      ``[B, L, D]`` states (``[B, T, D]`` with ``positions``); those at
      padded positions are finite but meaningless.
    """
    x = self.embed(inputs, deterministic, decode)
    return self.encoder(
        x, inputs != PAD_ID, deterministic, decode, positions=positions
    )

  def item_embeddings(self):
    """Returns the tied item table ``[V, D]``, ``V = num_items + 1``."""
    return self.embed.table()

  def item_bias(self):
    """Returns the per-item output bias ``[V]`` (zeros: SASRec has none)."""
    return jnp.zeros((self.num_items + 1,), self.embed.table().dtype)

  def logits(self, states):
    """Scores states against the tied item table.

    Args:
      states: ``[..., D]``.

    Returns:
      ``[..., V]`` scores for ids ``0..num_items``; column ``PAD_ID`` is
      included and callers mask it.
    """
    return jnp.einsum('...D,VD->...V', states, self.item_embeddings())
