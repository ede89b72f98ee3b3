"""Recurrent inference for causal LinRec SASRec: O(1) work per interaction.

A thin layer over the model's own decode mode (`SASRec(...)(..., decode=True)`,
`attention.linrec_step` in each layer): no second forward pass lives here.

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
(`model.init(...)['params']`) and are jit-compiled and batched over users;
the state is the model's 'cache' collection plus the latest output.

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

import flax.struct
import jax
import jax.numpy as jnp

from linrec_jax.constants import PAD_ID
from linrec_jax.layers import attention as attention_lib
from linrec_jax.models.sasrec import SASRec

# Attention variants whose per-layer memory is a fixed-size state.
RECURRENT_VARIANTS = attention_lib.RECURRENT_VARIANTS


@flax.struct.dataclass
class StreamState:
  """The recurrent state of a batch of B users; its size is fixed.

  Attributes:
    cache: the model's decode-mode 'cache' collection: per layer the
      attention's `kv` `[B, H, K, K]` (`sum_j k_hat_j v_j^T` over the
      user's items so far, each term times `g^(items after j)` with a
      decay) and the embedding's position counter `length` `[B]`.
    last: `[B, D]`, the top layer's output at the latest item (zeros before
      the first one), which `scores` ranks the items with.
    model: the `SASRec` the state belongs to (static).
  """

  cache: dict
  last: jax.Array
  model: SASRec = flax.struct.field(pytree_node=False)

  @property
  def length(self) -> jax.Array:
    """int32 `[B]`: real items fed so far (the next one's position, clamped
    to max_len - 1)."""
    return self.cache['embed']['next_positions']['length']


def check_model(model) -> None:
  """Raises ValueError unless `model` is a causal LinRec SASRec."""
  if not isinstance(model, SASRec):
    raise ValueError(
        f'streaming needs a SASRec model, got {type(model).__name__}: a '
        'bidirectional model has no recurrent form'
    )
  config = model.config
  if config.attention not in RECURRENT_VARIANTS or not config.causal:
    raise ValueError(
        f'streaming needs causal attention in {RECURRENT_VARIANTS}, got '
        f'attention={config.attention!r}, causal={config.causal}: only these '
        'keep a fixed-size state per layer'
    )


def _one_item(batch_size):
  return jnp.full((batch_size, 1), PAD_ID, jnp.int32)


def _shapes(tree) -> dict[str, tuple]:
  """`{'encoder/block0/attention/key/kernel': shape, ...}` of a tree."""
  return {
      '/'.join(str(getattr(key, 'key', key)) for key in path): jnp.shape(leaf)
      for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def _check_params(params, model) -> None:
  """Raises ValueError unless `params` has exactly the model's shapes."""
  expected = jax.eval_shape(
      lambda: model.init(jax.random.key(0), _one_item(1))['params']
  )
  want, got = _shapes(expected), _shapes(params)
  for path, shape in want.items():
    if got.get(path) != shape:
      raise ValueError(
          f'params do not fit the model: {path} has shape {got.get(path)}; '
          f'{model.config.attention} needs {shape}'
      )
  extra = sorted(set(got) - set(want))
  if extra:
    raise ValueError(
        f'params do not fit the model: {extra[0]} is not a parameter of '
        f'{model.config}'
    )


def init_state(params, batch_size: int, *, model) -> StreamState:
  """The state of `batch_size` users with empty histories.

  Args:
    params: SASRec parameters (`model.init(...)['params']`).
    batch_size: number of users B.
    model: the `SASRec` the parameters belong to (causal LinRec).

  Returns:
    A `StreamState` of zeros.

  Raises:
    ValueError: the model is not causal LinRec SASRec, or the parameters do
      not fit it.
  """
  check_model(model)
  _check_params(params, model)
  shapes = jax.eval_shape(
      lambda: model.apply(
          {'params': params},
          _one_item(batch_size),
          decode=True,
          mutable=['cache'],
      )
  )
  states, cache = shapes
  return StreamState(
      cache=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), cache['cache']),
      last=jnp.zeros(states.shape[::2], states.dtype),
      model=model,
  )


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
  out, mutated = state.model.apply(
      {'params': params, 'cache': state.cache},
      item_ids[:, None],
      decode=True,
      mutable=['cache'],
  )
  real = (item_ids != PAD_ID)[:, None]
  return state.replace(
      cache=mutated['cache'],
      last=jnp.where(real, out[:, 0].astype(state.last.dtype), state.last),
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
  state, _ = jax.lax.scan(step, state, jnp.swapaxes(items, 0, 1))
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
  return state.model.apply({'params': params}, state.last, method='logits')


def beyond_max_len(params, state: StreamState):
  """bool `[B]`: True where a user's history is longer than max_len.

  For those users `scores` no longer equals a full re-encode of their last
  max_len items (see the module docstring).
  """
  del params  # The model in the state knows max_len.
  return state.length > state.model.config.max_len
