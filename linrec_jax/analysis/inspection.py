"""What a trained encoder attends to: explicit attention weights.

For analysis only: the weights are quadratic in the length, `[B, H, L, M]`,
which the attention functions themselves never form (except softmax).
"""

import jax.numpy as jnp

from linrec_jax.layers import attention as attention_lib
from linrec_jax.layers.encoder import DECAY_LOGIT


def attention_weights(
    name, query, key, *, mask=None, causal=False, decay_logit=None
):
  """The weight of key m in the output of query l, per head.

  Every attention variant is linear in its values, so running it on the
  identity as values (value m = the m-th unit vector) returns its weights:
  `out[b, l, h, m] = w[b, h, l, m]`.

  Args:
    name: a key of `attention.VARIANTS`.
    query: `[B, L, H, K]`.
    key: `[B, L, H, K]`.
    mask: optional bool `[B, L]`, True at real items.
    causal: whether query l sees only keys m <= l.
    decay_logit: `[H]`, the layer's learned decay logits; required for
      `attention.LEARNED_DECAY_VARIANTS` (`layer_decay_logits` reads them
      from a model's parameters), refused for the others.

  Returns:
    float32 `[B, H, L, M]`; zero where key m is invisible to query l, and in
    the rows of padded queries.
  """
  if name not in attention_lib.VARIANTS:
    raise ValueError(
        f'unknown attention {name!r}; one of '
        f'{sorted(attention_lib.VARIANTS)}'
    )
  learned = name in attention_lib.LEARNED_DECAY_VARIANTS
  if learned != (decay_logit is not None):
    raise ValueError(
        f'attention {name!r} '
        + (
            "needs decay_logit=, the layer's learned "
            'decay logits (layer_decay_logits)'
            if learned
            else 'takes no decay_logit'
        )
    )
  batch, length, heads, _ = query.shape
  identity = jnp.broadcast_to(
      jnp.eye(length, dtype=jnp.float32)[:, None],
      (batch, length, heads, length),
  )
  extra = {'decay_logit': decay_logit} if learned else {}
  out = attention_lib.VARIANTS[name](
      query.astype(jnp.float32),
      key.astype(jnp.float32),
      identity,
      mask=mask,
      causal=causal,
      **extra,
  )
  return jnp.transpose(out, (0, 2, 1, 3))


def layer_decay_logits(model, params):
  """Each encoder block's learned decay logits, for `attention_weights`.

  Args:
    model: a SASRec or BERT4Rec module.
    params: its parameters.

  Returns:
    A list over blocks of `[H]` arrays, or of None when the model's
    attention has no learned decay.
  """
  if model.config.attention not in attention_lib.LEARNED_DECAY_VARIANTS:
    return [None] * model.config.layers
  encoder = params['encoder']
  return [
      encoder[f'block{index}']['attention'][DECAY_LOGIT]
      for index in range(model.config.layers)
  ]


def layer_queries_and_keys(model, params, inputs):
  """Each encoder block's attention queries and keys for `inputs`.

  Args:
    model: a SASRec or BERT4Rec module.
    params: its parameters.
    inputs: int32 `[B, L]` item ids (padding `PAD_ID`).

  Returns:
    A list over blocks of `(query, key)`, each `[B, L, H, K]`.
  """
  _, state = model.apply(
      {'params': params},
      inputs,
      capture_intermediates=True,
      mutable=['intermediates'],
  )
  blocks = state['intermediates']['encoder']
  out = []
  for index in range(model.config.layers):
    projections = blocks[f'block{index}']['attention']
    split = lambda x: x.reshape(x.shape[:2] + (model.config.heads, -1))
    out.append(
        tuple(
            split(projections[name]['__call__'][0]) for name in ('query', 'key')
        )
    )
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
      'effective_keys': total**2
      / jnp.maximum(jnp.sum(magnitude**2, -1), 1e-30),
      'uniform_recent_share': jnp.broadcast_to(
          jnp.minimum(recent, count) / jnp.maximum(count, 1), total.shape
      ),
  }
