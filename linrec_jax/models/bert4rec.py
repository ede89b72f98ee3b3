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
from linrec_jax.layers.encoder import ACTIVATIONS, Encoder, check_block_args


class BERT4Rec(nn.Module):
  """Bidirectional encoder with a tied output head; see ``SASRec`` fields.

  There is no ``causal`` field: attention is always bidirectional, so every
  attention variant is accepted. ``__call__`` returns the states after the
  output head (dense -> exact GELU -> LayerNorm; the GELU is fixed, as in
  RecBole, whatever ``activation`` the blocks use), so ``logits`` and sampled
  losses only need ``item_embeddings()`` and ``item_bias()``.
  """

  num_items: int
  max_len: int = 200
  hidden: int = 128
  layers: int = 2
  heads: int = 8
  ffn: int = 256
  dropout: float = 0.2
  attention: str = 'linrec'
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
        causal=False,
        activation=self.activation,
        attention_dropout=self.attention_dropout,
    )
    super().__post_init__()

  @property
  def mask_token(self):
    """The cloze mask id, ``num_items + 1``."""
    return self.num_items + 1

  def setup(self):
    self.embed = SequenceEmbedding(
        self.num_items + 2,
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
        False,
        self.mask_padding,
        self.dropout,
        self.activation,
        self.ln_eps,
        self.pre_ln,
        self.attention_dropout,
    )
    self.head = nn.Dense(
        self.hidden, kernel_init=normal_init, bias_init=nn.initializers.zeros
    )
    self.head_norm = nn.LayerNorm(epsilon=self.ln_eps)
    self.bias = self.param(
        'output_bias', nn.initializers.zeros, (self.num_items + 1,)
    )

  def __call__(self, inputs, deterministic=True):
    """Encodes item histories, bidirectionally.

    Args:
      inputs: int32 ``[B, L]`` ids in ``0..num_items + 1`` (``PAD_ID`` at
        padding, ``mask_token`` at cloze positions), ``L <= max_len``.
      deterministic: if False, applies dropout (needs a 'dropout' rng).

    Returns:
      ``[B, L, D]`` states after the output head; those at padded positions
      are finite but meaningless.
    """
    x = self.embed(inputs, deterministic)
    x = self.encoder(x, inputs != PAD_ID, deterministic)
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
