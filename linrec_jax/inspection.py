"""What a trained encoder attends to: explicit attention weights.

For analysis only: the weights are quadratic in the length, `[B, H, L, M]`,
which the attention functions themselves never form (except softmax).
`attention_weights(...) @ value` equals the output of the attention function
of the same name at every real position.
"""

import math

import jax
import jax.numpy as jnp

from linrec_jax.layers import attention as attention_lib

_INSPECTABLE = ('softmax', 'linrec', 'linrec_mean', 'linear', 'efficient')


def attention_weights(name, query, key, *, mask=None, causal=False):
  """The weight of key m in the output of query l, per head.

  Args:
    name: one of softmax, linrec, linrec_mean, linear, efficient.
    query: `[B, L, H, K]`.
    key: `[B, L, H, K]`.
    mask: optional bool `[B, L]`, True at real items.
    causal: whether query l sees only keys m <= l.

  Returns:
    float32 `[B, H, L, M]`, zero where key m is invisible to query l.
  """
  if name not in _INSPECTABLE:
    raise ValueError(f'no weights for {name!r}; one of {_INSPECTABLE}')
  q, k = (x.astype(jnp.float32) for x in (query, key))
  batch, length = q.shape[:2]
  real = jnp.ones((batch, length), bool) if mask is None else mask
  visible = jnp.broadcast_to(real[:, None, None, :],
                             (batch, 1, length, length))
  if causal:
    visible = visible & jnp.tri(length, dtype=bool)
  dot = lambda a, b: jnp.einsum('BLHK,BMHK->BHLM', a, b)
  unit = lambda x: x * jax.lax.rsqrt(jnp.sum(x * x, -1, keepdims=True)
                                     + attention_lib.NORM_EPS)
  if name == 'softmax':
    scores = jnp.where(visible, dot(q, k) / math.sqrt(q.shape[-1]), -jnp.inf)
    weights = jax.nn.softmax(scores, axis=-1)
  elif name in ('linrec', 'linrec_mean'):
    weights = dot(unit(jax.nn.elu(q)), unit(jax.nn.elu(k)))
    weights = weights / math.sqrt(q.shape[-1])
    if name == 'linrec_mean':
      count = jnp.sum(visible, axis=-1, keepdims=True)
      weights = weights / jnp.maximum(count, 1)
  elif name == 'linear':
    scores = jnp.where(visible, dot(jax.nn.elu(q) + 1, jax.nn.elu(k) + 1), 0)
    weights = scores / (jnp.sum(scores, -1, keepdims=True)
                        + attention_lib.LINEAR_EPS)
  else:  # efficient: each key feature's softmax over the visible keys.
    exp_k = jnp.exp(k - jnp.max(k))
    exp_k = jnp.where(real[:, :, None, None], exp_k, 0)
    total = jnp.einsum('BQLM,BMHK->BHLK', visible.astype(jnp.float32), exp_k)
    weights = jnp.einsum('BLHK,BMHK,BHLK->BHLM', jax.nn.softmax(q, -1), exp_k,
                         jnp.where(total > 0, 1 / total, 0))
  return jnp.where(visible, weights, 0)


def layer_queries_and_keys(model, params, inputs):
  """Each encoder block's attention queries and keys for `inputs`.

  Args:
    model: a SASRec or BERT4Rec module.
    params: its parameters.
    inputs: int32 `[B, L]` item ids (padding `PAD_ID`).

  Returns:
    A list over blocks of `(query, key)`, each `[B, L, H, K]`.
  """
  _, state = model.apply({'params': params}, inputs,
                         capture_intermediates=True, mutable=['intermediates'])
  blocks = state['intermediates']['encoder']
  out = []
  for index in range(model.layers):
    projections = blocks[f'block{index}']['attention']
    split = lambda x: x.reshape(x.shape[:2] + (model.heads, -1))
    out.append(tuple(split(projections[name]['__call__'][0])
                     for name in ('query', 'key')))
  return out


def focus(weights, visible, recent=5):
  """How concentrated each query's weights are, per row and head.

  Args:
    weights: `[B, H, M]`, one query's weights per row and head.
    visible: bool `[B, M]`, the keys that query sees (the most recent has
      the largest index).
    recent: how many of the latest visible keys count as recent.

  Returns:
    A dict of `[B, H]` arrays: `recent_share` (share of sum |w| on the
    `recent` latest visible keys), `top_share` (largest |w| over sum |w|),
    `negative_share` (share of sum |w| on negative weights),
    `effective_keys` ((sum |w|)^2 / sum w^2: 1 when one key takes all, the
    number of keys when all are equal), and `uniform_recent_share` (what
    `recent_share` would be with equal weights).
  """
  magnitude = jnp.where(visible[:, None, :], jnp.abs(weights), 0)
  total = jnp.maximum(jnp.sum(magnitude, -1), 1e-30)
  rank_from_latest = jnp.cumsum(visible[:, ::-1], axis=1)[:, ::-1]
  is_recent = visible & (rank_from_latest <= recent)
  count = jnp.sum(visible, -1, keepdims=True)
  return {
      'recent_share': jnp.sum(magnitude * is_recent[:, None], -1) / total,
      'top_share': jnp.max(magnitude, -1) / total,
      'negative_share': jnp.sum(jnp.where(weights < 0, magnitude, 0), -1)
                        / total,
      'effective_keys': total ** 2 / jnp.maximum(
          jnp.sum(magnitude ** 2, -1), 1e-30),
      'uniform_recent_share': jnp.broadcast_to(
          jnp.minimum(recent, count) / jnp.maximum(count, 1),
          total.shape),
  }
