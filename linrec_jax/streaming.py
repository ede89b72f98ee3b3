"""Recurrent inference for causal LinRec SASRec: O(1) work per interaction.

Covers `linrec`, `linrec_decay` and `linrec_learned_decay`
(`RECURRENT_VARIANTS`); with a decay the state update is `S = g S + k_hat
v^T`, `g` the head's factor: fixed (`attention.head_decays`) for
`linrec_decay`, and for `linrec_learned_decay` read from each layer's
parameters (`sigmoid` of the block's `attention/decay_logit`, so the layers
may differ), the rest unchanged.

With causal LinRec every layer's memory of a history is, per head, the
`K x K` matrix `S = sum_j k_hat_j v_j^T` (LINREC_NOTES §2, "Recurrent
inference"). Everything else in a SASRec block (embedding, LayerNorm, the
q/k/v/out projections, the feed-forward network) acts on one position at a
time, and in a causal model the outputs of layer l-1 at past positions never
change once computed. So the keys and values that layer l would read from
the past are already summed into its `S^l`, and a new item at position t
needs only its own path through the stack:

  x = LN(item_emb[i] + pos_emb[t])
  for each layer l:  q, k, v = projections of x (per head)
                     S^l += k_hat v^T;  a = q_hat S^l / sqrt(K)
                     x = post-LN (or pre-LN) residual blocks around a, FFN
  scores = x . item_emb^T

which costs O(layers * (D^2 + D * ffn + H * K^2)) per user, whatever the
history length. The functions use SASRec's parameter tree as it is
(`model.init(...)['params']`) and are jit-compiled and batched over users.

Equivalence. After feeding a user's first n <= max_len items, `scores`
equals the full forward pass over those items, right-padded (the layout of
the default `pad_side="right"`), at position n - 1, up to float32 rounding.
A model trained with left padding gives its real items other positions, so
its full pass differs from this (and from its own right-padded pass).

Positions past max_len. The learned position table has max_len rows. Item
n > max_len is embedded with the last row (position max_len - 1, clamped)
and is added to the same running sums: the state keeps summarising the
whole history, not a window. The full model instead truncates a history
to its last max_len items, which shifts every position and drops the
oldest items, something a fixed-size sum cannot undo. So past max_len the
streaming scores no longer equal a windowed re-encode; they equal a causal
pass over the whole history with clamped positions, an extrapolation the
model never saw in training. `beyond_max_len` tells which users are there;
a caller that needs the windowed result re-encodes those users with
`feed` from `init_state` on their last max_len items (O(max_len) once).
"""

import math

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from linrec_jax.constants import PAD_ID
from linrec_jax.layers import attention as attention_lib
from linrec_jax.layers.encoder import DECAY_LOGIT, FeedForward
from linrec_jax.models.sasrec import SASRec


@flax.struct.dataclass
class StreamState:
  """The recurrent state of a batch of B users; its size is fixed.

  Attributes:
    kv: float32 `[layers, B, H, K, K]`, per layer and head the running sum
      `sum_j k_hat_j v_j^T` over the user's items so far (each term times
      `g^(items after j)` with a decay).
    length: int32 `[B]`, the position counter: real items fed so far (the
      next item takes position `min(length, max_len - 1)`).
    last: `[B, D]`, the top layer's output at the latest item (zeros before
      the first one), which `scores` ranks the items with.
    ln_eps: LayerNorm epsilon of the model (static).
    activation: feed-forward activation name of the model (static).
    attention: one of `RECURRENT_VARIANTS` (static).
  """

  kv: jax.Array
  length: jax.Array
  last: jax.Array
  ln_eps: float = flax.struct.field(pytree_node=False, default=1e-12)
  activation: str = flax.struct.field(pytree_node=False, default='gelu')
  attention: str = flax.struct.field(pytree_node=False, default='linrec')


# Attention variants whose per-layer memory is a fixed-size state.
RECURRENT_VARIANTS = ('linrec', 'linrec_decay', 'linrec_learned_decay')


def check_model(model) -> None:
  """Raises ValueError unless `model` is a causal LinRec SASRec."""
  if not isinstance(model, SASRec):
    raise ValueError(
        f'streaming needs a SASRec model, got {type(model).__name__}: a '
        'bidirectional model has no recurrent form'
    )
  if model.attention not in RECURRENT_VARIANTS or not model.causal:
    raise ValueError(
        f'streaming needs causal attention in {RECURRENT_VARIANTS}, got '
        f'attention={model.attention!r}, causal={model.causal}: only these '
        'keep a fixed-size state per layer'
    )


def _check_params(params, model) -> None:
  encoder = params['encoder']
  blocks = sum(1 for name in encoder if name.startswith('block'))
  positions = params['embed']['positions'].shape
  if (
      blocks != model.layers
      or positions != (model.max_len, model.hidden)
      or ('final_norm' in encoder) != model.pre_ln
  ):
    raise ValueError(
        f'params do not fit the model: {blocks} blocks, position table '
        f'{positions}, final_norm {"final_norm" in encoder}; the model has '
        f'{model.layers} layers, max_len {model.max_len}, hidden '
        f'{model.hidden}, pre_ln {model.pre_ln}'
    )
  if model.attention in attention_lib.LEARNED_DECAY_VARIANTS:
    for index in range(model.layers):
      layer = encoder[f'block{index}']['attention']
      shape = getattr(layer.get(DECAY_LOGIT), 'shape', None)
      if shape != (model.heads,):
        raise ValueError(
            f'params do not fit the model: block{index}/attention/'
            f'{DECAY_LOGIT} has shape {shape}; {model.attention} needs '
            f'({model.heads},)'
        )


def init_state(params, batch_size: int, *, model) -> StreamState:
  """The state of `batch_size` users with empty histories.

  Args:
    params: SASRec parameters (`model.init(...)['params']`).
    batch_size: number of users B.
    model: the `SASRec` the parameters belong to (causal LinRec); supplies
      the head count, LayerNorm epsilon and activation.

  Returns:
    A `StreamState` of zeros.

  Raises:
    ValueError: the model is not causal LinRec SASRec, or the parameters do
      not fit it.
  """
  check_model(model)
  _check_params(params, model)
  head_dim = model.hidden // model.heads
  dtype = params['embed']['positions'].dtype
  # Sums in at least float32, as `attention.linrec` computes.
  kv_dtype = jnp.promote_types(dtype, jnp.float32)
  return StreamState(
      kv=jnp.zeros(
          (model.layers, batch_size, model.heads, head_dim, head_dim), kv_dtype
      ),
      length=jnp.zeros((batch_size,), jnp.int32),
      last=jnp.zeros((batch_size, model.hidden), dtype),
      ln_eps=model.ln_eps,
      activation=model.activation,
      attention=model.attention,
  )


def _unit_elu(x):
  """LinRec's feature map: `elu(x) / ||elu(x)||_2` over the last axis.

  The same lines as `attention._l2_normalize(jax.nn.elu(x))` (private there),
  with the same `NORM_EPS` inside the square root.
  """
  x = jax.nn.elu(x)
  return x * lax.rsqrt(
      jnp.sum(x * x, axis=-1, keepdims=True) + attention_lib.NORM_EPS
  )


def _dense(p, x):
  return nn.Dense(p['kernel'].shape[-1]).apply({'params': p}, x)


def _norm(p, x, eps):
  return nn.LayerNorm(epsilon=eps).apply({'params': p}, x)


def _attend(p, x, kv, decay):
  """One token's multi-head causal LinRec step.

  Args:
    p: a block's `attention` parameters.
    x: `[B, D]` the token's input.
    kv: `[B, H, K, F]` the layer's state before the token.
    decay: `[H]` factors applied to the state first, or None.

  Returns:
    `([B, D] output after the out projection, [B, H, K, F] new state)`.
  """
  batch, heads = x.shape[0], kv.shape[1]
  split = lambda t: t.reshape(batch, heads, -1).astype(kv.dtype)  # BD->BHK
  query, key, value = (
      split(_dense(p[name], x)) for name in ('query', 'key', 'value')
  )
  q_hat = _unit_elu(query) / math.sqrt(query.shape[-1])
  if decay is not None:
    kv = decay.astype(kv.dtype)[:, None, None] * kv
  kv = kv + jnp.einsum('BHK,BHF->BHKF', _unit_elu(key), value)
  out = jnp.einsum('BHK,BHKF->BHF', q_hat, kv).astype(x.dtype)
  return _dense(p['out'], out.reshape(batch, -1)), kv


def _layer_decay(p, state):
  """`[H]` decay factors of one layer (attention parameters `p`), or None."""
  if state.attention == 'linrec_decay':
    return attention_lib.head_decays(state.kv.shape[2])
  if state.attention == 'linrec_learned_decay':
    return attention_lib.learned_decays(p[DECAY_LOGIT])
  return None


def _block(p, x, kv, *, decay, ln_eps, activation, pre_ln):
  """One `encoder.TransformerBlock` at one position: `[B, D]` -> `[B, D]`."""
  hidden = x.shape[-1]
  ffn = FeedForward(
      hidden, p['ffn']['dense_in']['kernel'].shape[-1], activation
  )
  feed_forward = lambda h: ffn.apply({'params': p['ffn']}, h)
  if pre_ln:
    out, kv = _attend(p['attention'], _norm(p['norm0'], x, ln_eps), kv, decay)
    x = x + out
    return x + feed_forward(_norm(p['norm1'], x, ln_eps)), kv
  out, kv = _attend(p['attention'], x, kv, decay)
  x = _norm(p['norm0'], x + out, ln_eps)
  return _norm(p['norm1'], x + feed_forward(x), ln_eps), kv


@jax.jit
def update(params, state: StreamState, item_ids) -> StreamState:
  """Feeds one new item per user.

  Args:
    params: SASRec parameters.
    state: the users' `StreamState` (B users).
    item_ids: int `[B]`, each user's new item in `1..num_items`, or
      `PAD_ID` to leave that user's state exactly unchanged.

  Returns:
    The new state. Past max_len the position is clamped (module docstring).
  """
  embed, encoder = params['embed'], params['encoder']
  max_len = embed['positions'].shape[0]
  real = item_ids != PAD_ID
  position = jnp.minimum(state.length, max_len - 1)
  x = embed['items']['embedding'][item_ids] + embed['positions'][position]
  x = _norm(embed['norm'], x, state.ln_eps)
  pre_ln = 'final_norm' in encoder
  kvs = []
  for layer in range(state.kv.shape[0]):
    block = encoder[f'block{layer}']
    x, kv = _block(
        block,
        x,
        state.kv[layer],
        decay=_layer_decay(block['attention'], state),
        ln_eps=state.ln_eps,
        activation=state.activation,
        pre_ln=pre_ln,
    )
    kvs.append(kv)
  if pre_ln:
    x = _norm(encoder['final_norm'], x, state.ln_eps)
  return state.replace(
      kv=jnp.where(real[None, :, None, None, None], jnp.stack(kvs), state.kv),
      length=state.length + real.astype(state.length.dtype),
      last=jnp.where(real[:, None], x.astype(state.last.dtype), state.last),
  )


@jax.jit
def feed(params, state: StreamState, items) -> StreamState:
  """Feeds several items per user, oldest first (a scan of `update`).

  Args:
    params: SASRec parameters.
    state: the users' `StreamState` (B users).
    items: int `[B, T]`; `PAD_ID` entries are skipped, so right-, left- or
      irregularly padded rows all give the state of their real items.

  Returns:
    The state after all T steps.
  """
  step = lambda s, ids: (update(params, s, ids), None)
  state, _ = lax.scan(step, state, jnp.swapaxes(items, 0, 1))
  return state


@jax.jit
def scores(params, state: StreamState):
  """Scores every item for every user from the latest state.

  Args:
    params: SASRec parameters.
    state: the users' `StreamState`.

  Returns:
    `[B, V]` scores for ids `0..num_items` (`V = num_items + 1`), as
    `SASRec.logits` gives them: column `PAD_ID` is included and callers mask
    it. Users with no items yet get all zeros.
  """
  table = params['embed']['items']['embedding']
  return jnp.einsum('BD,VD->BV', state.last, table)


def beyond_max_len(params, state: StreamState):
  """bool `[B]`: True where a user's history is longer than max_len.

  For those users `scores` no longer equals a full re-encode of their last
  max_len items (see the module docstring).
  """
  return state.length > params['embed']['positions'].shape[0]
