"""SASRec: a next-item Transformer over item histories, LinRec by default.

Defaults are the official LinRec values (hidden 128, 2 layers, 8 heads, FFN
256, dropout 0.2, exact GELU, LayerNorm eps 1e-12, post-LN, N = 200).
"""

import flax.linen as nn
import jax.numpy as jnp

from linrec_jax.constants import PAD_ID
from linrec_jax.layers.embeddings import SequenceEmbedding
from linrec_jax.layers.encoder import Encoder, check_block_args


class SASRec(nn.Module):
  """Item + position embedding, a block stack, tied output scores.

  ``causal=True`` gives the unidirectional next-item model that trains on all
  positions at once. The official LinRec run uses ``causal=False`` and
  ``mask_padding=False`` with prefix training (loss on the last position
  only), which is leak-free only in that setup.

  Attributes:
    num_items: real items, ids ``1..num_items``; ``PAD_ID`` (0) is padding.
    max_len: longest accepted sequence (rows of the position table).
    hidden: model size D.
    layers: number of Transformer blocks.
    heads: attention heads (must divide ``hidden``).
    ffn: feed-forward inner size.
    dropout: dropout rate on embeddings and after each sublayer.
    attention: a key of ``attention.VARIANTS``.
    causal: position t sees only positions <= t.
    mask_padding: mask padding in attention (False: official LinRec).
    pre_ln: pre-LN blocks instead of the official post-LN (the embedding
      LayerNorm stays; the encoder adds a final LayerNorm).
    ln_eps: LayerNorm epsilon.
    activation: feed-forward activation name (exact erf GELU by default).
    attention_dropout: dropout on the attention weights (RecBole's
      ``attn_dropout_prob``; softmax variants only, 0 by default).
  """

  num_items: int
  max_len: int = 200
  hidden: int = 128
  layers: int = 2
  heads: int = 8
  ffn: int = 256
  dropout: float = 0.2
  attention: str = 'linrec'
  causal: bool = True
  mask_padding: bool = True
  pre_ln: bool = False
  ln_eps: float = 1e-12
  activation: str = 'gelu'
  attention_dropout: float = 0.0

  def __post_init__(self):
    check_block_args(
        hidden=self.hidden,
        heads=self.heads,
        attention=self.attention,
        causal=self.causal,
        activation=self.activation,
        attention_dropout=self.attention_dropout,
    )
    super().__post_init__()

  def setup(self):
    self.embed = SequenceEmbedding(
        self.num_items + 1,
        self.max_len,
        self.hidden,
        self.dropout,
        self.ln_eps,
    )
    self.encoder = Encoder(
        self.layers,
        self.hidden,
        self.heads,
        self.ffn,
        self.attention,
        self.causal,
        self.mask_padding,
        self.dropout,
        self.activation,
        self.ln_eps,
        self.pre_ln,
        self.attention_dropout,
    )

  def __call__(self, inputs, deterministic=True):
    """Encodes item histories.

    Args:
      inputs: int32 ``[B, L]`` item ids, ``PAD_ID`` at padding, ``L <=
        max_len``. Positions are array indices, so left and right padding
        give the real items different positions (see ``layers.embeddings``).
      deterministic: if False, applies dropout (needs a 'dropout' rng).

    Returns:
      ``[B, L, D]`` states; those at padded positions are finite but
      meaningless.
    """
    x = self.embed(inputs, deterministic)
    return self.encoder(x, inputs != PAD_ID, deterministic)

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
