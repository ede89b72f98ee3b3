"""BERT4Rec: a bidirectional cloze model over item histories.

The mask token is id ``num_items + 1``, so the item table has
``num_items + 2`` rows; scores cover ids ``0..num_items`` only. The output
head is RecBole's: dense -> GELU -> LayerNorm, then tied item embeddings
plus a per-item output bias.
"""

import flax.linen as nn
import jax.numpy as jnp

from linrec_jax.constants import PAD_ID
from linrec_jax.layers.embeddings import SequenceEmbedding, normal_init
from linrec_jax.layers.config import EncoderConfig
from linrec_jax.layers.encoder import ACTIVATIONS, Encoder


class BERT4Rec(nn.Module):
  """Bidirectional encoder with a tied output head.

  Attention is always bidirectional: ``config.causal`` must be False, and
  every attention variant is accepted. ``__call__`` returns the states after
  the output head (dense -> exact GELU -> LayerNorm; the GELU is fixed, as
  in RecBole, whatever ``activation`` the blocks use), so ``logits`` and
  sampled losses only need ``item_embeddings()`` and ``item_bias()``.

  Attributes:
    num_items: real items, ids ``1..num_items``; ``PAD_ID`` (0) is padding
      and ``num_items + 1`` the mask token.
    config: the `EncoderConfig` (non-causal).
  """

  num_items: int
  config: EncoderConfig = EncoderConfig(causal=False)

  def __post_init__(self):
    if self.config.causal:
      raise ValueError(
          '--causal: BERT4Rec is bidirectional; use EncoderConfig(causal='
          'False) (--nocausal)'
      )
    super().__post_init__()

  @property
  def mask_token(self):
    """The cloze mask id, ``num_items + 1``."""
    return self.num_items + 1

  def setup(self):
    config = self.config
    self.embed = SequenceEmbedding(self.num_items + 2, self.config)
    self.encoder = Encoder(config)
    self.head = nn.Dense(
        config.hidden, kernel_init=normal_init, bias_init=nn.initializers.zeros
    )
    self.head_norm = nn.LayerNorm(epsilon=config.ln_eps)
    self.bias = self.param(
        'output_bias', nn.initializers.zeros, (self.num_items + 1,)
    )

  def __call__(self, inputs, deterministic=True, positions=None):
    """Encodes item histories, bidirectionally.

    Args:
      inputs: int32 ``[B, L]`` ids in ``0..num_items + 1`` (``PAD_ID`` at
        padding, ``mask_token`` at cloze positions), ``L <= max_len``.
      deterministic: if False, applies dropout (needs a 'dropout' rng).
      positions: optional int ``[B, T]``: return the states at these
        positions only, computing the last block and the head only there
        (``layers.encoder``).

    Returns:
      ``[B, L, D]`` states after the output head (``[B, T, D]`` with
      ``positions``); those at padded positions are finite but meaningless.
    """
    x = self.embed(inputs, deterministic)
    x = self.encoder(x, inputs != PAD_ID, deterministic, positions=positions)
    return self.head_norm(ACTIVATIONS['gelu'](self.head(x)))

  def item_embeddings(self):
    """Returns the tied table ``[V, D]`` without the mask-token row."""
    return self.embed.table()[: self.num_items + 1]

  def item_bias(self):
    """Returns the output bias ``[V]``, ``V = num_items + 1``."""
    return self.bias

  def logits(self, states):
    """Scores states against the tied item table plus the output bias.

    Args:
      states: ``[..., D]``, as returned by ``__call__``.

    Returns:
      ``[..., V]`` scores for ids ``0..num_items`` (no mask-token column);
      column ``PAD_ID`` is included and callers mask it.
    """
    scores = jnp.einsum('...D,VD->...V', states, self.item_embeddings())
    return scores + self.bias
