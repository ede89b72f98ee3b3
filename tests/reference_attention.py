"""Independent NumPy versions of every attention variant, for the tests.

Each builds the quadratic weights `[B, H, L, M]` from the formula, then
`weights @ values`, in float64.
"""

import numpy as np

LINEAR_EPS = 1e-6  # The Linear Transformer's denominator epsilon.


def np_elu(x):
  return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def np_softmax(x, axis):
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def np_unit(x, axis):
  return x / np.sqrt((x * x).sum(axis=axis, keepdims=True))


def np_visible(mask, length, causal):
  """bool [B, 1, L, M]: may query l see key m."""
  shape = (len(mask), 1, length, length)
  visible = np.broadcast_to(mask[:, None, None, :], shape)
  if causal:
    visible = visible & np.tri(length, dtype=bool)
  return visible


def np_decay(q, decay=None):
  """[H, L, L]: g_h^|l - m|; by default 1 - g_h = 2^-(1 + 7 (h + 1/2) / H)."""
  heads, length = q.shape[2], q.shape[1]
  if decay is None:
    decay = 1 - 2.0 ** -(1 + 7 * (np.arange(heads) + 0.5) / heads)
  position = np.arange(length)
  distance = np.abs(position[:, None] - position[None, :])
  return np.asarray(decay, np.float64)[:, None, None] ** distance


def np_sigmoid(theta):
  """Logistic function in float64, written from its definition."""
  with np.errstate(over='ignore'):  # exp(-theta) = inf gives 0, as it should.
    return 1 / (1 + np.exp(-np.asarray(theta, np.float64)))


def np_weights(name, q, k, visible, mask, decay=None, decay_logit=None):
  d = q.shape[-1]
  if name in ('linrec_learned_decay', 'softmax_learned_decay'):
    # The fixed-decay weights with g_h = sigmoid(theta_h).
    assert decay_logit is not None, f'{name} needs decay_logit'
    fixed = name.replace('learned_', '')
    return np_weights(fixed, q, k, visible, mask, np_sigmoid(decay_logit))
  if name == 'softmax':
    scores = np.einsum('blhd,bmhd->bhlm', q, k) / np.sqrt(d)
    scores = np.where(visible, scores, -np.inf)
    any_visible = visible.any(axis=-1, keepdims=True)
    scores = np.where(any_visible, scores, 0)
    return np.where(visible, np_softmax(scores, -1), 0)
  if name == 'linrec':
    unit_q, unit_k = np_unit(np_elu(q), -1), np_unit(np_elu(k), -1)
    scores = np.einsum('blhd,bmhd->bhlm', unit_q, unit_k) / np.sqrt(d)
    return np.where(visible, scores, 0)
  if name == 'linrec_mean':  # LinRec's weights over the visible key count.
    weights = np_weights('linrec', q, k, visible, mask)
    return weights / np.maximum(visible.sum(axis=-1, keepdims=True), 1)
  if name == 'linrec_decay':  # LinRec's weights times g_h^|l - m|.
    return np_weights('linrec', q, k, visible, mask) * np_decay(q, decay)
  if name == 'softmax_decay':  # Softmax weights times g_h^|l - m|, renormed.
    weights = np_weights('softmax', q, k, visible, mask) * np_decay(q, decay)
    total = weights.sum(axis=-1, keepdims=True)
    return np.divide(
        weights, total, out=np.zeros_like(weights), where=total > 0
    )
  if name == 'linear':
    scores = np.einsum('blhd,bmhd->bhlm', np_elu(q) + 1, np_elu(k) + 1)
    scores = np.where(visible, scores, 0)
    return scores / (scores.sum(axis=-1, keepdims=True) + LINEAR_EPS)
  real = mask[:, :, None, None]
  if name == 'efficient':  # Each key feature's softmax over visible keys.
    exp_k = np.where(real, np.exp(k - k.max()), 0)
    seen = np.broadcast_to(
        visible, visible.shape[:1] + (q.shape[2],) + visible.shape[2:]
    ).astype(np.float64)
    total = np.einsum('bhlm,bmhd->bhld', seen, exp_k)
    inverse = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    return (
        np.einsum('blhd,bmhd,bhld->bhlm', np_softmax(q, -1), exp_k, inverse)
        * seen
    )
  assert name == 'linrec_seqnorm'
  elu_k = np.where(real, np_elu(k), 0)
  unit_k = elu_k / np.sqrt((elu_k * elu_k).sum(axis=1, keepdims=True))
  unit_q = np_unit(np_elu(q), -1)
  return np.einsum('blhd,bmhd->bhlm', unit_q, unit_k) / np.sqrt(d)


def np_attention(
    name, q, k, v, mask=None, causal=False, decay=None, decay_logit=None
):
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  b, l = q.shape[:2]
  mask = np.ones((b, l), bool) if mask is None else np.asarray(mask)
  weights = np_weights(
      name, q, k, np_visible(mask, l, causal), mask, decay, decay_logit
  )
  out = np.einsum('bhlm,bmhd->blhd', weights, v)
  return np.where(mask[:, :, None, None], out, 0)
