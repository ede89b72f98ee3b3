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

Scored positions: a loss or a ranking that reads the output at a few
positions per row (prefix samples: one; cloze: a fifth) passes them as
``positions`` ``[B, T]``, and the last block computes only there. Its
attention still reads every position as keys and values; its queries are
the T rows where that costs less (``attention.attends_query_rows``:
softmax, LinRec, the Linear Transformer and the decayed LinRecs, the
causal and decayed linear forms up to ``attention.MAX_SCORED_ROWS`` rows)
and every position for the others (then the output is gathered); the output
projection, the residuals, both LayerNorms, the feed-forward network and
both dropouts act on the T rows. Without dropout this equals the whole
computation gathered at ``positions``; with dropout the masks of the last
block are drawn for ``[B, T, D]`` and so differ from the whole
computation's (same distribution).

Every module takes the one `EncoderConfig` (validated when it is built).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from linrec_jax.layers import attention as attention_lib
from linrec_jax.layers.config import EncoderConfig
from linrec_jax.layers.dropout import Dropout
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
# Name of the recurrent state in an attention layer's 'cache' (decode mode).
STATE = 'kv'


def gather_rows(x, positions):
  """``x`` ``[B, L, ...]`` at ``positions`` int ``[B, T]``: ``[B, T, ...]``."""
  index = positions.reshape(positions.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, index, axis=1)


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

  Decode mode (`decode=True`, causal `attention.RECURRENT_VARIANTS` only)
  takes one position per row and keeps the layer's memory of the rows'
  past in the 'cache' collection: `kv` `[B, H, K, K]` (at least float32),
  advanced by `attention.linrec_step`; a row whose position is padding
  keeps its state unchanged.

  Attributes:
    config: the encoder's `EncoderConfig` (hidden, heads, attention, causal,
      attention_dropout are read).
  """

  config: EncoderConfig

  @nn.compact
  def __call__(
      self, x, mask=None, deterministic=True, decode=False, positions=None
  ):
    """Attends over the sequence.

    Args:
      x: ``[B, L, D]`` input states (``L = 1`` in decode mode).
      mask: optional bool ``[B, L]``, True at real items; None attends to
        every position (the official LinRec behaviour).
      deterministic: if False, applies the attention dropout.
      decode: advance the cached recurrent state by one position instead
        of attending over ``x`` alone.
      positions: optional int ``[B, T]``: return only these rows of the
        output (the output projection then acts on T rows).

    Returns:
      ``[B, L, D]`` (``[B, T, D]`` with ``positions``), after the output
      dense layer.
    """
    config = self.config
    split = lambda t: t.reshape(t.shape[:2] + (config.heads, -1))  # BLD->BLHK
    query_rows = positions is not None and attention_lib.attends_query_rows(
        config.attention, config.causal, positions.shape[1]
    )
    options = {}
    if query_rows:
      options['query_positions'] = positions
      query = split(_dense(config.hidden, 'query')(gather_rows(x, positions)))
    else:
      query = split(_dense(config.hidden, 'query')(x))
    key = split(_dense(config.hidden, 'key')(x))
    value = split(_dense(config.hidden, 'value')(x))
    if config.attention in attention_lib.LEARNED_DECAY_VARIANTS:
      options['decay_logit'] = self.param(
          DECAY_LOGIT,
          lambda _, heads: attention_lib.decay_logits(heads),
          config.heads,
      )
    if decode:
      out = self._step(query, key, value, mask, options.get('decay_logit'))
    else:
      if config.attention_dropout > 0 and not deterministic:
        drop = Dropout(rate=config.attention_dropout)
        options['weights_dropout'] = lambda w: drop(w, deterministic=False)
      attend = attention_lib.VARIANTS[config.attention]
      out = attend(
          query, key, value, mask=mask, causal=config.causal, **options
      )
    out = out.reshape(out.shape[:2] + (-1,))
    if positions is not None and not query_rows:
      out = gather_rows(out, positions)
    return _dense(config.hidden, 'out')(out)

  def _step(self, query, key, value, mask, decay_logit):
    """Decode mode: `[B, 1, H, K]` inputs -> `[B, 1, H, K]` outputs."""
    config = self.config
    if not config.causal or config.attention not in (
        attention_lib.RECURRENT_VARIANTS
    ):
      raise ValueError(
          f'decode needs causal attention in '
          f'{attention_lib.RECURRENT_VARIANTS}, got attention='
          f'{config.attention!r}, causal={config.causal}: only these keep a '
          'fixed-size state per layer'
      )
    if query.shape[1] != 1:
      raise ValueError(
          f'decode takes one position per row, got {query.shape[1]}'
      )
    batch, _, heads, head_dim = query.shape
    state = self.variable(
        'cache',
        STATE,
        jnp.zeros,
        (batch, heads, head_dim, head_dim),
        jnp.promote_types(query.dtype, jnp.float32),
    )
    log_decay = attention_lib.recurrent_log_decay(
        config.attention, heads, decay_logit
    )
    out, new_state = attention_lib.linrec_step(
        query[:, 0], key[:, 0], value[:, 0], state.value, log_decay=log_decay
    )
    if mask is not None:
      new_state = jnp.where(
          mask[:, 0, None, None, None], new_state, state.value
      )
    state.value = new_state
    return out[:, None]


class FeedForward(nn.Module):
  """Position-wise ``dense(ffn) -> activation -> dense(hidden)``."""

  config: EncoderConfig

  @nn.compact
  def __call__(self, x):
    """Maps ``[B, L, D]`` to ``[B, L, D]``."""
    activation = ACTIVATIONS[self.config.activation]
    x = activation(_dense(self.config.ffn, 'dense_in')(x))
    return _dense(self.config.hidden, 'dense_out')(x)


class TransformerBlock(nn.Module):
  """Attention and feed-forward sublayers with residuals and LayerNorm.

  Attributes:
    config: the encoder's `EncoderConfig`; `mask_padding=False` passes no
      mask to the attention (the official LinRec code), `pre_ln` chooses
      the order, `dropout` follows each sublayer.
  """

  config: EncoderConfig

  @nn.compact
  def __call__(
      self, x, mask=None, deterministic=True, decode=False, positions=None
  ):
    """Maps states ``[B, L, D]``, mask ``[B, L]`` or None, to ``[B, L, D]``.

    With ``positions`` int ``[B, T]`` the output is ``[B, T, D]``: the
    attention reads all of ``x``, everything after it only the T rows (see
    the module docstring).

    In decode mode (one position per row, see `MultiHeadAttention`) only the
    attention keeps a state: the other sublayers act on one position.
    """
    config = self.config
    attend = MultiHeadAttention(config, name='attention')
    attn_mask = mask if config.mask_padding or decode else None
    sublayers = (
        lambda h: attend(h, attn_mask, deterministic, decode, positions),
        FeedForward(config, name='ffn'),
    )
    drop = Dropout(rate=config.dropout)
    for i, sublayer in enumerate(sublayers):
      norm = nn.LayerNorm(epsilon=config.ln_eps, name=f'norm{i}')
      # After the attention, the residual stream is the scored rows alone.
      rows = x if i or positions is None else gather_rows(x, positions)
      if config.pre_ln:
        x = rows + drop(sublayer(norm(x)), deterministic=deterministic)
      else:
        x = norm(rows + drop(sublayer(x), deterministic=deterministic))
    return x


class Encoder(nn.Module):
  """A stack of ``config.layers`` TransformerBlocks (a final LN if pre-LN).

  Attributes:
    config: the `EncoderConfig`.
  """

  config: EncoderConfig

  @nn.compact
  def __call__(
      self, x, mask=None, deterministic=True, decode=False, positions=None
  ):
    """Encodes a sequence.

    Args:
      x: ``[B, L, D]`` input states.
      mask: optional bool ``[B, L]``, True at real items.
      deterministic: if False, applies dropout (needs a 'dropout' rng).
      decode: one position per row, attention from the cached states
        (see `MultiHeadAttention`).
      positions: optional int ``[B, T]``, the positions whose states are
        wanted: the last block computes only there (module docstring).

    Returns:
      ``[B, L, D]`` output states (``[B, T, D]`` with ``positions``).
    """
    last = self.config.layers - 1
    for i in range(self.config.layers):
      x = TransformerBlock(self.config, name=f'block{i}')(
          x, mask, deterministic, decode, positions if i == last else None
      )
    if self.config.pre_ln:
      x = nn.LayerNorm(epsilon=self.config.ln_eps, name='final_norm')(x)
    return x
