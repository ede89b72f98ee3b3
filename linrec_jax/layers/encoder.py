"""Transformer blocks with a pluggable attention function.

The block follows RecBole's ``TransformerLayer``, which the official LinRec
code patches: separate q/k/v dense layers (hidden -> hidden, with bias), the
attention function chosen by name from ``attention.VARIANTS``, an output
dense, then a position-wise feed-forward network. Post-LN (the official
order) computes

  x = LN(x + dropout(dense_o(attention(x))))
  x = LN(x + dropout(dense_2(act(dense_1(x)))))

and pre-LN computes ``x = x + dropout(sublayer(LN(x)))`` for each sublayer,
with one more LayerNorm after the last block.

Dropout on the attention probabilities (`attention_dropout`, RecBole's
`attn_dropout_prob`) exists only for the variants that form them
(`attention.WEIGHT_DROPOUT_VARIANTS`): LinRec has no probabilities to drop
(its configured attention dropout is unused in the official code). It is 0
by default.
"""

import functools

import flax.linen as nn
import jax

from linrec_jax.layers import attention as attention_lib
from linrec_jax.layers.embeddings import normal_init

ACTIVATIONS = {
    # Exact erf GELU, as RecBole and the official LinRec runs use.
    'gelu': functools.partial(jax.nn.gelu, approximate=False),
    'gelu_tanh': functools.partial(jax.nn.gelu, approximate=True),
    'relu': jax.nn.relu,
    'swish': jax.nn.swish,
}


# Name of the learned decay logits in an attention layer's parameters.
DECAY_LOGIT = 'decay_logit'


def check_block_args(
    *,
    hidden,
    heads,
    attention,
    causal,
    activation='gelu',
    attention_dropout=0.0,
):
  """Raises a ValueError naming the offending field, or returns None."""
  if attention_dropout and attention not in (
      attention_lib.WEIGHT_DROPOUT_VARIANTS
  ):
    raise ValueError(
        f'attention {attention!r} forms no attention weights to drop; '
        f'attention_dropout needs one of '
        f'{sorted(attention_lib.WEIGHT_DROPOUT_VARIANTS)}'
    )
  if heads <= 0 or hidden % heads:
    raise ValueError(f'hidden ({hidden}) must be divisible by heads ({heads})')
  if attention not in attention_lib.VARIANTS:
    raise ValueError(
        f'unknown attention {attention!r}; valid names: '
        f'{sorted(attention_lib.VARIANTS)}'
    )
  if causal and attention not in attention_lib.CAUSAL_VARIANTS:
    raise ValueError(
        f'attention {attention!r} does not support causal=True; causal '
        f'variants: {sorted(attention_lib.CAUSAL_VARIANTS)}'
    )
  if activation not in ACTIVATIONS:
    raise ValueError(
        f'unknown activation {activation!r}; valid names: '
        f'{sorted(ACTIVATIONS)}'
    )


def _dense(features, name):
  return nn.Dense(
      features,
      kernel_init=normal_init,
      bias_init=nn.initializers.zeros,
      name=name,
  )


class MultiHeadAttention(nn.Module):
  """q/k/v projections, a named attention function, output projection.

  Parameters: dense layers `query`, `key`, `value`, `out`; with an
  attention in `attention.LEARNED_DECAY_VARIANTS` also `decay_logit`
  `[heads]` float32 (initialised to `attention.decay_logits(heads)`; the
  decay is `sigmoid(decay_logit)`), passed to the function as
  `decay_logit=`. Other variants have no parameter beyond the four dense
  layers.

  Attributes:
    hidden: model size D.
    heads: number of heads H; the head size is K = D // H.
    attention: a key of ``attention.VARIANTS``.
    causal: whether position t may only attend to positions <= t.
    attention_dropout: dropout rate on the attention weights (variants of
      ``attention.WEIGHT_DROPOUT_VARIANTS`` only).
  """

  hidden: int
  heads: int
  attention: str = 'linrec'
  causal: bool = False
  attention_dropout: float = 0.0

  @nn.compact
  def __call__(self, x, mask=None, deterministic=True):
    """Attends over the sequence.

    Args:
      x: ``[B, L, D]`` input states.
      mask: optional bool ``[B, L]``, True at real items; None attends to
        every position (the official LinRec behaviour).
      deterministic: if False, applies the attention dropout.

    Returns:
      ``[B, L, D]``, after the output dense layer.
    """
    batch, length, _ = x.shape
    split = lambda t: t.reshape(batch, length, self.heads, -1)  # BLD->BLHK
    query = split(_dense(self.hidden, 'query')(x))
    key = split(_dense(self.hidden, 'key')(x))
    value = split(_dense(self.hidden, 'value')(x))
    attend = attention_lib.VARIANTS[self.attention]
    options = {}
    if self.attention in attention_lib.LEARNED_DECAY_VARIANTS:
      options['decay_logit'] = self.param(
          DECAY_LOGIT,
          lambda _, heads: attention_lib.decay_logits(heads),
          self.heads,
      )
    if self.attention_dropout > 0 and not deterministic:
      drop = nn.Dropout(rate=self.attention_dropout)
      options['weights_dropout'] = lambda w: drop(w, deterministic=False)
    out = attend(query, key, value, mask=mask, causal=self.causal, **options)
    return _dense(self.hidden, 'out')(out.reshape(batch, length, -1))


class FeedForward(nn.Module):
  """Position-wise ``dense(ffn) -> activation -> dense(hidden)``."""

  hidden: int
  ffn: int
  activation: str = 'gelu'

  @nn.compact
  def __call__(self, x):
    """Maps ``[B, L, D]`` to ``[B, L, D]``."""
    x = ACTIVATIONS[self.activation](_dense(self.ffn, 'dense_in')(x))
    return _dense(self.hidden, 'dense_out')(x)


class TransformerBlock(nn.Module):
  """Attention and feed-forward sublayers with residuals and LayerNorm.

  Attributes:
    hidden: model size D.
    heads: number of attention heads H (must divide ``hidden``).
    ffn: inner size of the feed-forward network.
    attention: a key of ``attention.VARIANTS``.
    causal: restrict attention to positions <= t.
    mask_padding: pass the padding mask to the attention; False reproduces
      the official LinRec code, which applies no mask at all.
    dropout: rate of the dropout after each sublayer.
    activation: a key of ``ACTIVATIONS`` (exact erf GELU by default).
    ln_eps: LayerNorm epsilon (1e-12 official).
    pre_ln: normalise before each sublayer instead of after the residual.
    attention_dropout: dropout rate on the attention weights.
  """

  hidden: int
  heads: int
  ffn: int
  attention: str = 'linrec'
  causal: bool = False
  mask_padding: bool = True
  dropout: float = 0.0
  activation: str = 'gelu'
  ln_eps: float = 1e-12
  pre_ln: bool = False
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

  @nn.compact
  def __call__(self, x, mask=None, deterministic=True):
    """Maps states ``[B, L, D]``, mask ``[B, L]`` or None, to ``[B, L, D]``."""
    attend = MultiHeadAttention(
        self.hidden,
        self.heads,
        self.attention,
        self.causal,
        self.attention_dropout,
        name='attention',
    )
    attn_mask = mask if self.mask_padding else None
    sublayers = (
        lambda h: attend(h, attn_mask, deterministic),
        FeedForward(self.hidden, self.ffn, self.activation, name='ffn'),
    )
    drop = nn.Dropout(rate=self.dropout)
    for i, sublayer in enumerate(sublayers):
      norm = nn.LayerNorm(epsilon=self.ln_eps, name=f'norm{i}')
      if self.pre_ln:
        x = x + drop(sublayer(norm(x)), deterministic=deterministic)
      else:
        x = norm(x + drop(sublayer(x), deterministic=deterministic))
    return x


class Encoder(nn.Module):
  """A stack of ``layers`` TransformerBlocks (plus a final LN if pre-LN).

  Attributes:
    layers: number of blocks.
    See ``TransformerBlock`` for the others.
  """

  layers: int
  hidden: int
  heads: int
  ffn: int
  attention: str = 'linrec'
  causal: bool = False
  mask_padding: bool = True
  dropout: float = 0.0
  activation: str = 'gelu'
  ln_eps: float = 1e-12
  pre_ln: bool = False
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

  @nn.compact
  def __call__(self, x, mask=None, deterministic=True):
    """Encodes a sequence.

    Args:
      x: ``[B, L, D]`` input states.
      mask: optional bool ``[B, L]``, True at real items.
      deterministic: if False, applies dropout (needs a 'dropout' rng).

    Returns:
      ``[B, L, D]`` output states.
    """
    for i in range(self.layers):
      x = TransformerBlock(
          self.hidden,
          self.heads,
          self.ffn,
          attention=self.attention,
          causal=self.causal,
          mask_padding=self.mask_padding,
          dropout=self.dropout,
          activation=self.activation,
          ln_eps=self.ln_eps,
          pre_ln=self.pre_ln,
          attention_dropout=self.attention_dropout,
          name=f'block{i}',
      )(x, mask, deterministic)
    if self.pre_ln:
      x = nn.LayerNorm(epsilon=self.ln_eps, name='final_norm')(x)
    return x
