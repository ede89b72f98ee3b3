"""Attention kernels as pure functions: LinRec and its baselines.

Every variant maps `query, key, value` of shape `[B, L, H, K]` to `[B, L, H,
K]` (the value head dim may differ from the query/key head dim; the output
takes the value's). Keyword-only arguments:

- `mask`: bool `[B, L]`, True at real items; None means every position is
  real. Padded keys contribute nothing, and the outputs at padded query
  positions are zero in every variant, so a caller may rely on that.
- `causal`: position t attends to positions <= t only (`CAUSAL_VARIANTS`
  lists the variants that support it).
- `decay_logit`: `[H]`, only and always for `LEARNED_DECAY_VARIANTS`, the
  attention layer's learned per-head decay logits.
- `query_positions`: int `[B, T]`, only for `QUERY_ROW_VARIANTS`: `query`
  holds the queries of these positions alone, `[B, T, H, K]`, and the
  result is the rows of the whole output at them, `[B, T, H, F]`.

Axis names in einsum strings: B batch, L query positions, M key positions, H
heads, K query/key head dim, F value head dim; inside the chunked scan, C
and T are query and key positions within one chunk; in the rows form T is
the query rows.

Norms, softmaxes and accumulations run in at least float32 (bfloat16 inputs
are upcast); the result is cast back to the inputs' dtype.
"""

import math

import jax
import jax.numpy as jnp
from jax import lax

# Added to the squared L2 norm before the square root in LinRec, so a zero
# feature vector (possible only if every ELU feature is exactly 0) gives a
# zero unit vector and finite gradients instead of NaN. The authors' code
# has no epsilon; at 1e-12 the relative change of a norm of order 1 is ~1e-12.
NORM_EPS = 1e-12
# Added to the Linear Transformer's denominator, which is 0 for a query with
# no visible key (the output is then 0 rather than NaN).
LINEAR_EPS = 1e-6
# Score given to invisible keys before a softmax. Finite (unlike -inf) so a
# row with no visible key gives no NaN; such rows are zeroed afterwards.
MASK_VALUE = -1e30
# Positions per chunk in the causal linear forms; clipped to the length.
# Forward + backward of causal LinRec (H = 8, d_h = 16) on the 2-core CPU:
# chunks of 32 took 0.75-0.92x the time of chunks of 64 at N = 1000 and
# 4000, chunks of 8, 16, 128 and 256 no less than 32 (the quadratic part
# inside a chunk grows with it, the scan's steps with its inverse).
DEFAULT_CHUNK_SIZE = 32


def _compute_dtype(*arrays):
  """Dtype for internal math: the inputs' dtype promoted to >= float32."""
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _check_inputs(query, key, value, mask, query_positions=None):
  """Raises ValueError on inconsistent shapes."""
  if query.ndim != 4 or key.ndim != 4 or value.ndim != 4:
    raise ValueError(
        'query, key and value must be [batch, length, heads, head_dim]; got '
        f'{query.shape}, {key.shape}, {value.shape}.'
    )
  rows = key.shape if query_positions is None else query_positions.shape
  if (
      query.shape[:2] != rows[:2]
      or query.shape[2:] != key.shape[2:]
      or value.shape[:3] != key.shape[:3]
  ):
    raise ValueError(
        'query and key must have the same shape (query: one row per '
        'query_positions entry) and value the same [batch, length, heads] '
        f'as key; got {query.shape}, {key.shape}, {value.shape}'
        + ('' if query_positions is None else f', {query_positions.shape}')
        + '.'
    )
  if mask is not None and mask.shape != key.shape[:2]:
    raise ValueError(
        f'mask must be [batch, length] = {key.shape[:2]}; got {mask.shape}.'
    )


def _prepare(query, key, value, mask, query_positions=None):
  """Checks shapes, upcasts to the compute dtype and fills in the mask.

  Returns:
    `(q, k, v, mask)` with q, k, v in the compute dtype and mask a bool
    `[B, L]` array over the keys (all True when `mask` is None).
  """
  _check_inputs(query, key, value, mask, query_positions)
  dtype = _compute_dtype(query, key, value)
  if mask is None:
    mask = jnp.ones(key.shape[:2], dtype=bool)
  return (
      query.astype(dtype),
      key.astype(dtype),
      value.astype(dtype),
      mask.astype(bool),
  )


def _query_mask(mask, query_positions):
  """The key mask `[B, L]` read at the query rows (`[B, T]`, or itself)."""
  if query_positions is None:
    return mask
  return jnp.take_along_axis(mask, query_positions, axis=1)


def _zero_masked(x, mask):
  """Zeroes `x` `[B, L, H, K]` where `mask` `[B, L]` is False."""
  return jnp.where(mask[:, :, None, None], x, 0)


def _finish(out, mask, *inputs):
  """Zeroes padded query positions and casts back to the input dtype."""
  return _zero_masked(out, mask).astype(jnp.result_type(*inputs))


def _require_non_causal(name, causal):
  if causal:
    raise ValueError(
        f'{name} attention has no causal form; use one of '
        f'{sorted(CAUSAL_VARIANTS)} for causal=True.'
    )


def _l2_normalize(x, axis):
  """`x / ||x||_2` along `axis`, with `NORM_EPS` inside the square root."""
  return x * lax.rsqrt(jnp.sum(x * x, axis=axis, keepdims=True) + NORM_EPS)


def _causal_linear_scan(q, k, v, chunk_size, log_decay=None):
  """Causal linear attention `out_t = sum_{j<=t} g^(t-j) (q_t . k_j) v_j`.

  `g` is a per-head decay (1, no decay, when `log_decay` is None). Within a
  chunk of C positions the causal scores are computed quadratically;
  across chunks a `[B, H, K, F]` state `sum_j g^(end-j) k_j v_j^T` is
  carried by `lax.scan`. Memory is linear in L: no `[.., L, K, F]` or
  `[.., L, L]` tensor exists, and the scan body is rematerialised in the
  backward pass so only one state per chunk is kept.

  Args:
    q: `[B, L, H, K]` query features.
    k: `[B, L, H, K]` key features (zero at positions to ignore).
    v: `[B, L, H, F]` values.
    chunk_size: positions per chunk (>= 1); clipped to L.
    log_decay: optional `[H]` finite `log g <= 0`, one per head (taking
      the log as input keeps `g^0 = 1` exact even where `g` itself would
      round to 0).

  Returns:
    `[B, L, H, F]`.
  """
  if chunk_size < 1:
    raise ValueError(f'chunk_size must be >= 1; got {chunk_size}.')
  batch, length, heads, k_dim = q.shape
  f_dim = v.shape[-1]
  chunk = min(chunk_size, length)
  num_chunks = -(-length // chunk)
  pad = num_chunks * chunk - length
  # Zero-padded keys and values add nothing; padded queries are cut off.
  q, k, v = (jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))) for x in (q, k, v))

  def to_chunks(x):  # [B, N*C, H, X] -> [N, B, C, H, X]
    x = x.reshape(batch, num_chunks, chunk, heads, x.shape[-1])
    return jnp.moveaxis(x, 1, 0)

  # Decay powers, all `exp(log g * distance)` with distance >= 0:
  # within[H, C, T] = g^(c-t) for t <= c (else 0), to_query[C, H] = g^(c+1)
  # (from the carried state, which ends one before the chunk), to_end[T, H]
  # = g^(C-1-t) (from key t to the chunk's end), per_chunk[H] = g^C.
  log_decay = (
      jnp.zeros((heads,), q.dtype)
      if log_decay is None
      else jnp.asarray(log_decay, q.dtype)
  )
  position = jnp.arange(chunk, dtype=q.dtype)
  distance = position[:, None] - position[None, :]
  within = jnp.where(
      distance >= 0,
      jnp.exp(log_decay[:, None, None] * jnp.maximum(distance, 0)),
      0,
  )
  to_query = jnp.exp((position[:, None] + 1) * log_decay)[:, :, None]
  to_end = jnp.exp((chunk - 1 - position[:, None]) * log_decay)[:, :, None]
  per_chunk = jnp.exp(chunk * log_decay)[:, None, None]

  @jax.checkpoint
  def step(state, chunk_qkv):
    qc, kc, vc = chunk_qkv
    scores = jnp.einsum('BCHK,BTHK->BHCT', qc, kc) * within
    out = jnp.einsum('BHCT,BTHF->BCHF', scores, vc)
    out = out + jnp.einsum('BCHK,BHKF->BCHF', qc * to_query, state)
    state = per_chunk * state + jnp.einsum('BTHK,BTHF->BHKF', kc * to_end, vc)
    return state, out

  state = jnp.zeros((batch, heads, k_dim, f_dim), dtype=q.dtype)
  _, out = lax.scan(step, state, (to_chunks(q), to_chunks(k), to_chunks(v)))
  out = jnp.moveaxis(out, 0, 1).reshape(batch, num_chunks * chunk, heads, f_dim)
  return out[:, :length]


def _linear_rows(q, k, v, query_positions, causal, log_decay=None):
  """The linear attention sums at `T` query rows only, in O(T L) per head.

  `out_t = sum_j w_tj (q_t . k_j) v_j` over every key j (`j <= p_t` when
  causal), with `w_tj = g^|p_t - j|` (1 without `log_decay`) and `p_t` the
  query's position: the rows of the whole computation, from the `[B, H, T,
  L]` scores of the T queries. The scan costs `C (K + F) + 2 K F` per
  position for all L rows, this `T (K + F)` per key position, so it is the
  cheaper form for up to about a chunk of rows (`MAX_SCORED_ROWS`).

  Args:
    q: `[B, T, H, K]` query features at `query_positions`.
    k: `[B, L, H, K]` key features (zero at positions to ignore).
    v: `[B, L, H, F]` values.
    query_positions: int `[B, T]`, the queries' positions in `[0, L)`.
    causal: whether query t sees only keys j <= p_t.
    log_decay: optional `[H]` finite `log g <= 0`, one per head.

  Returns:
    `[B, T, H, F]`.
  """
  distance = query_positions[:, :, None] - jnp.arange(k.shape[1])  # [B,T,L]
  scores = jnp.einsum('BTHK,BLHK->BHTL', q, k)
  if log_decay is not None:
    decay = jnp.asarray(log_decay, q.dtype)[None, :, None, None]
    scores = scores * jnp.exp(decay * jnp.abs(distance)[:, None])
  if causal:
    scores = jnp.where((distance >= 0)[:, None], scores, 0)
  return jnp.einsum('BHTL,BLHF->BTHF', scores, v)


def _linrec_features(query, key, mask):
  """LinRec's unit-norm ELU features, the queries divided by sqrt(K).

  Returns:
    `(q_hat / sqrt(K), k_hat)`, both `[B, L, H, K]`, keys zeroed at padded
    positions.
  """
  q_hat = _l2_normalize(jax.nn.elu(query), axis=-1)
  k_hat = _zero_masked(_l2_normalize(jax.nn.elu(key), axis=-1), mask)
  return q_hat / math.sqrt(query.shape[-1]), k_hat


def linrec(
    query,
    key,
    value,
    *,
    mask=None,
    causal=False,
    chunk_size=DEFAULT_CHUNK_SIZE,
    query_positions=None,
):
  """LinRec attention (Liu et al., SIGIR 2023), as the authors' code runs it.

  `phi = elu` (alpha 1, no +1); each query and each key token is
  L2-normalised over its head dim (`NORM_EPS` inside the norm); then
  `out = Q_hat (K_hat^T V) / sqrt(K)`: no softmax and no denominator, so
  this equals `(Q_hat K_hat^T / sqrt(K)) V` exactly and costs O(L K F).

  With a mask, `k_hat` is zero at padded positions, which is exact because
  there is no denominator: outputs at real positions do not depend on the
  amount of padding. With `causal=True`, `out_t = q_hat_t S_t / sqrt(K)` with
  `S_t = sum_{j<=t} k_hat_j v_j^T`, computed chunkwise (see
  `_causal_linear_scan`). Neither mask nor causality exists in the authors'
  code; with neither, this is their computation.

  Args:
    query: `[B, L, H, K]`.
    key: `[B, L, H, K]`.
    value: `[B, L, H, F]`.
    mask: optional bool `[B, L]`, True at real items.
    causal: whether position t sees only positions <= t.
    chunk_size: chunk length of the causal scan (clipped to L).
    query_positions: optional int `[B, T]`: `query` holds the queries of
      these positions alone, `[B, T, H, K]`, and the result is the rows of
      the whole output at them (causal: `_linear_rows`, O(T L); else from
      `K_hat^T V` as above).

  Returns:
    `[B, L, H, F]` (`[B, T, H, F]` with `query_positions`), zero at padded
    positions, in the inputs' dtype.
  """
  q, k, v, mask = _prepare(query, key, value, mask, query_positions)
  q_hat, k_hat = _linrec_features(q, k, mask)
  if causal and query_positions is not None:
    out = _linear_rows(q_hat, k_hat, v, query_positions, causal=True)
  elif causal:
    out = _causal_linear_scan(q_hat, k_hat, v, chunk_size)
  else:
    kv = jnp.einsum('BMHK,BMHF->BHKF', k_hat, v)
    out = jnp.einsum('BLHK,BHKF->BLHF', q_hat, kv)
  return _finish(out, _query_mask(mask, query_positions), query, key, value)


def linrec_mean(
    query,
    key,
    value,
    *,
    mask=None,
    causal=False,
    chunk_size=DEFAULT_CHUNK_SIZE,
):
  """LinRec averaged over the visible keys: an ablation of its scale.

  Not the official behaviour. `linrec` sums one cosine-weighted value per
  visible key, so with `causal=True` its output grows with the number of
  keys a position sees (1 at the first item, up to L at the last), and the
  same weights must serve every scale. This divides position t's output by
  its number of visible real keys `n_t` (`n_t = #real positions <= t` when
  causal, else the number of real positions): `out_t = q_hat_t S_t /
  (sqrt(K) n_t)`. Still linear in L and exact under padding. Arguments and
  result as in `linrec`.
  """
  out = linrec(
      query, key, value, mask=mask, causal=causal, chunk_size=chunk_size
  )
  real = (
      jnp.ones(query.shape[:2], jnp.int32)
      if mask is None
      else mask.astype(jnp.int32)
  )
  visible = (
      jnp.cumsum(real, axis=1)
      if causal
      else jnp.sum(real, axis=1, keepdims=True)
  )
  scale = 1.0 / jnp.maximum(visible, 1).astype(out.dtype)
  return out * scale[:, :, None, None]


def head_decays(heads):
  """Fixed per-head decays `g_h` of `linrec_decay`, `[heads]` float32.

  `1 - g_h` runs geometrically from `2**-1` to `2**-8` across the heads,
  taken at the centres of `heads` equal steps: `1 - g_h = 2**-(1 + 7 (h +
  1/2) / heads)`. With 4 heads the half-lives are about 2, 8, 28 and 96
  positions, so some heads look at the latest items and some at the whole
  history. One head gets `1 - g = 2**-4.5` (half-life 15).
  """
  exponent = 1 + 7 * (jnp.arange(heads, dtype=jnp.float32) + 0.5) / heads
  return 1 - 2.0**-exponent


def _decays(decay, heads):
  """`decay` as a `[heads]` float32 array; None gives `head_decays(heads)`."""
  if decay is None:
    return head_decays(heads)
  decay = jnp.asarray(decay, jnp.float32)
  if decay.shape != (heads,):
    raise ValueError(
        f'decay must have shape [heads] = ({heads},); got {decay.shape}.'
    )
  return decay


def linrec_decay(
    query,
    key,
    value,
    *,
    mask=None,
    causal=False,
    chunk_size=DEFAULT_CHUNK_SIZE,
    decay=None,
    query_positions=None,
):
  """LinRec with a fixed exponential decay per head: a recency ablation.

  Not in the paper. LinRec's weights are cosines bounded by `1 / sqrt(K)`,
  so no key can outweigh the others and the latest items get about the
  same share as any other. This multiplies the weight of key j for query
  t by `g_h^|t-j|` (`head_decays`, positions counted in the padded
  sequence; padding sits at one end, so the distance between real items
  is their true distance):
  `out_t = sum_j g_h^|t-j| (q_hat_t . k_hat_j) v_j / sqrt(K)` over the
  visible keys. Still linear in L: the causal form is `linrec`'s chunked
  scan with the decay folded into its state (a recurrent update `S_t =
  g S_{t-1} + k_hat_t v_t^T`); the non-causal form adds a reversed scan
  and removes the diagonal counted twice. `decay`: optional `[H]` factors in
  (0, 1], one per head, instead of `head_decays(H)` (all 1 gives `linrec`);
  `query_positions` (either causality) computes those rows alone
  (`_linear_rows`, O(T L)); other arguments and the result as in `linrec`.
  """
  log_decay = jnp.log(_decays(decay, query.shape[2]))
  return _decayed_linrec(
      query, key, value, mask, causal, chunk_size, log_decay, query_positions
  )


def _decayed_linrec(
    query, key, value, mask, causal, chunk_size, log_decay, query_positions
):
  """`linrec_decay` with the decays given as `log_decay` `[H]` (<= 0)."""
  q, k, v, mask = _prepare(query, key, value, mask, query_positions)
  q_hat, k_hat = _linrec_features(q, k, mask)
  if query_positions is not None:
    out = _linear_rows(q_hat, k_hat, v, query_positions, causal, log_decay)
    return _finish(out, _query_mask(mask, query_positions), query, key, value)
  out = _causal_linear_scan(q_hat, k_hat, v, chunk_size, log_decay)
  if not causal:
    flip = lambda x: jnp.flip(x, axis=1)
    out = out + flip(
        _causal_linear_scan(
            flip(q_hat), flip(k_hat), flip(v), chunk_size, log_decay
        )
    )
    diagonal = jnp.einsum('BLHK,BLHK->BLH', q_hat, k_hat)[..., None]
    out = out - diagonal * v
  return _finish(out, mask, query, key, value)


def linrec_seqnorm(query, key, value, *, mask=None, causal=False):
  """Ablation of LinRec: keys L2-normalised over the sequence axis.

  Not the official behaviour. Some third-party ports read the paper's
  "column-wise" normalisation of K as normalising each feature column of K
  over the (real) sequence positions; this implements that reading, with
  queries normalised per token as in `linrec` and the same `1 / sqrt(K)`
  scale (the ports' extra length-dependent factors are left out, so outputs
  at real positions do not depend on padding). Non-causal only: a column
  norm over the whole sequence sees the future.

  Args:
    query: `[B, L, H, K]`.
    key: `[B, L, H, K]`.
    value: `[B, L, H, F]`.
    mask: optional bool `[B, L]`, True at real items.
    causal: must be False.

  Returns:
    `[B, L, H, F]`, zero at padded positions, in the inputs' dtype.

  Raises:
    ValueError: if `causal` is True.
  """
  _require_non_causal('linrec_seqnorm', causal)
  q, k, v, mask = _prepare(query, key, value, mask)
  q_hat = _l2_normalize(jax.nn.elu(q), axis=-1) / math.sqrt(q.shape[-1])
  k_hat = _l2_normalize(_zero_masked(jax.nn.elu(k), mask), axis=1)
  kv = jnp.einsum('BMHK,BMHF->BHKF', k_hat, v)
  out = jnp.einsum('BLHK,BHKF->BLHF', q_hat, kv)
  return _finish(out, mask, query, key, value)


def _softmax_attention(
    query,
    key,
    value,
    mask,
    causal,
    bias=None,
    weights_dropout=None,
    query_positions=None,
):
  """`softmax` with an optional bias `[H, L, L]` added to the scores and an
  optional function applied to the weights `[B, H, L, M]` (dropout)."""
  q, k, v, mask = _prepare(query, key, value, mask, query_positions)
  scores = jnp.einsum('BLHK,BMHK->BHLM', q, k) / math.sqrt(q.shape[-1])
  if bias is not None:
    scores = scores + bias
  visible = mask[:, None, None, :]
  if causal:
    keys = jnp.arange(k.shape[1])
    if query_positions is None:
      rows = keys[None, None, :, None]
    else:
      rows = query_positions[:, None, :, None]
    visible = visible & (keys <= rows)
  scores = jnp.where(visible, scores, MASK_VALUE)
  weights = jnp.where(visible, jax.nn.softmax(scores, axis=-1), 0)
  if weights_dropout is not None:
    weights = weights_dropout(weights)
  out = jnp.einsum('BHLM,BMHF->BLHF', weights, v)
  return _finish(out, _query_mask(mask, query_positions), query, key, value)


def softmax(
    query,
    key,
    value,
    *,
    mask=None,
    causal=False,
    weights_dropout=None,
    query_positions=None,
):
  """Scaled dot-product softmax attention, the quadratic baseline.

  Invisible keys (padded, or in the future when causal) get `MASK_VALUE`
  before the softmax and zero weight after it, so a query with no visible
  key returns zeros, never NaN.

  Args:
    query: `[B, L, H, K]`.
    key: `[B, L, H, K]`.
    value: `[B, L, H, F]`.
    mask: optional bool `[B, L]`, True at real items.
    causal: whether position t sees only positions <= t.
    weights_dropout: optional function applied to the attention weights
      `[B, H, L, M]` before they average the values: RecBole's attention
      dropout (e.g. a bound `linrec_jax.layers.dropout.Dropout`). None
      leaves them as is.
    query_positions: optional int `[B, T]`: `query` holds the queries of
      these positions alone, `[B, T, H, K]` (a causal query sees the keys
      up to its position), and the result is the rows of the whole output
      at them; the weights are then `[B, H, T, M]`.

  Returns:
    `[B, L, H, F]` (`[B, T, H, F]` with `query_positions`), zero at padded
    positions, in the inputs' dtype.
  """
  return _softmax_attention(
      query,
      key,
      value,
      mask,
      causal,
      weights_dropout=weights_dropout,
      query_positions=query_positions,
  )


def softmax_decay(
    query,
    key,
    value,
    *,
    mask=None,
    causal=False,
    decay=None,
    weights_dropout=None,
):
  """Softmax with `linrec_decay`'s per-head recency decay: its control.

  Not in the paper. Each softmax weight is multiplied by `g_h^|t-j|` (the
  same `head_decays`) and the weights are renormalised over the visible
  keys, i.e. `|t-j| log g_h` is added to the scores (an ALiBi-style bias
  with fixed slopes). Trained beside `linrec_decay` and `softmax`, it
  separates what a recency prior gives any attention from what it gives
  LinRec. Quadratic in L, like `softmax`. `decay`: optional `[H]` factors
  in (0, 1], one per head, instead of `head_decays(H)` (all 1 gives
  `softmax`); other arguments (`weights_dropout` included) and the result as
  in `softmax`.
  """
  log_decay = jnp.log(_decays(decay, query.shape[2]))
  return _decayed_softmax(
      query, key, value, mask, causal, log_decay, weights_dropout
  )


def _decayed_softmax(
    query, key, value, mask, causal, log_decay, weights_dropout=None
):
  """`softmax_decay` with the decays given as `log_decay` `[H]` (<= 0)."""
  position = jnp.arange(query.shape[1])
  distance = jnp.abs(position[:, None] - position[None, :])
  bias = log_decay[:, None, None] * distance.astype(log_decay.dtype)
  return _softmax_attention(
      query, key, value, mask, causal, bias, weights_dropout
  )


def decay_logits(heads):
  """Initial `decay_logit` of the learned-decay variants, `[heads]` float32.

  The logit of `head_decays(heads)`, so that a learned decay starts where
  `linrec_decay`'s fixed one sits: with `1 - g = 2**-e`, `theta = log(g /
  (1 - g)) = log(1 - 2**-e) + e log 2`, computed from the exponent `e`
  rather than from `g` (whose `1 - g` float32 would round). With 4 heads
  about 0.98, 2.43, 3.70 and 4.93.
  """
  exponent = 1 + 7 * (jnp.arange(heads, dtype=jnp.float32) + 0.5) / heads
  return jnp.log1p(-(2.0**-exponent)) + exponent * math.log(2)


def _learned_log_decays(name, decay_logit, heads):
  """`log sigmoid(decay_logit)`, `[heads]`, in at least float32."""
  if decay_logit is None:
    raise ValueError(
        f"{name} needs decay_logit=, the layer's learned [heads] parameter "
        f'(attention.decay_logits({heads}) are its initial values).'
    )
  decay_logit = jnp.asarray(decay_logit)
  if decay_logit.shape != (heads,):
    raise ValueError(
        f'decay_logit must have shape [heads] = ({heads},); got '
        f'{decay_logit.shape}.'
    )
  dtype = jnp.promote_types(decay_logit.dtype, jnp.float32)
  return jax.nn.log_sigmoid(decay_logit.astype(dtype))


def learned_decays(decay_logit):
  """The decays `g = sigmoid(decay_logit)` of the learned variants, `[H]`.

  For reading a trained layer (and for `streaming`'s update). `g` lies in
  (0, 1) for every finite logit, but as a float32 it rounds to 1 above
  theta ~ 17 and to 0 below theta ~ -87. The attention functions therefore
  never form `g`: they use `log g = log_sigmoid(theta)`, finite and < 0
  for every finite theta up to ~87 in float32 (about `theta` for theta << 0,
  `-exp(-theta)` for theta >> 0), so no head reaches `log 0` (where
  `g^0 = exp(-inf * 0)` would be NaN) and a head only becomes `g = 1` (no
  decay, `linrec`) once `exp(-theta)` underflows.
  """
  decay_logit = jnp.asarray(decay_logit)
  dtype = jnp.promote_types(decay_logit.dtype, jnp.float32)
  return jnp.exp(jax.nn.log_sigmoid(decay_logit.astype(dtype)))


def linrec_learned_decay(
    query,
    key,
    value,
    *,
    mask=None,
    causal=False,
    chunk_size=DEFAULT_CHUNK_SIZE,
    decay_logit=None,
    query_positions=None,
):
  """`linrec_decay` with a learned decay per head: `g_h = sigmoid(theta_h)`.

  Not in the paper. The weight of key j for query t is `g_h^|t-j|` times
  LinRec's cosine, as in `linrec_decay`, but `g_h` is trained:
  `decay_logit` is the attention layer's `[H]` parameter `theta`
  (`encoder.MultiHeadAttention` creates it, initialised to
  `decay_logits(H)`, i.e. `g = head_decays(H)`). The sigmoid keeps every
  `g_h` in (0, 1) for any theta without clipping, so a gradient step can
  never make the decay invalid (`learned_decays`). Same cost as
  `linrec_decay`, linear in L, and the same O(1) recurrent update `S_t =
  g S_{t-1} + k_hat_t v_t^T` (`streaming`).

  Args:
    query: `[B, L, H, K]`.
    key: `[B, L, H, K]`.
    value: `[B, L, H, F]`.
    mask: optional bool `[B, L]`, True at real items.
    causal: whether position t sees only positions <= t.
    chunk_size: chunk length of the scan (clipped to L).
    decay_logit: `[H]` logits theta (required; no default decay).
    query_positions: optional int `[B, T]`, as in `linrec_decay`.

  Returns:
    `[B, L, H, F]` (`[B, T, H, F]` with `query_positions`), zero at padded
    positions, in the inputs' dtype.

  Raises:
    ValueError: `decay_logit` is missing or not `[H]`.
  """
  log_decay = _learned_log_decays(
      'linrec_learned_decay', decay_logit, query.shape[2]
  )
  return _decayed_linrec(
      query, key, value, mask, causal, chunk_size, log_decay, query_positions
  )


def softmax_learned_decay(
    query,
    key,
    value,
    *,
    mask=None,
    causal=False,
    decay_logit=None,
    weights_dropout=None,
):
  """`softmax_decay` with the learned decay of `linrec_learned_decay`.

  The control of `linrec_learned_decay`: `|t-j| log sigmoid(theta_h)` is
  added to the softmax scores (ALiBi-style slopes, now trained from
  `decay_logits(H)`). Quadratic in L. `decay_logit` as in
  `linrec_learned_decay` (required); other arguments (`weights_dropout`
  included) and the result as in `softmax`.
  """
  log_decay = _learned_log_decays(
      'softmax_learned_decay', decay_logit, query.shape[2]
  )
  return _decayed_softmax(
      query, key, value, mask, causal, log_decay, weights_dropout
  )


def linear(
    query,
    key,
    value,
    *,
    mask=None,
    causal=False,
    chunk_size=DEFAULT_CHUNK_SIZE,
    query_positions=None,
):
  """Linear Transformer attention (Katharopoulos et al., 2020).

  `phi(x) = elu(x) + 1`; `out_i = phi(q_i) S / (phi(q_i) . z + LINEAR_EPS)`
  with `S = sum_j phi(k_j) v_j^T` and `z = sum_j phi(k_j)` over the keys
  visible to i (real ones, and j <= i when causal). A query with no
  visible key returns zeros. The causal form shares LinRec's chunked scan,
  with a column of ones appended to the values to accumulate `z`.

  Args:
    query: `[B, L, H, K]`.
    key: `[B, L, H, K]`.
    value: `[B, L, H, F]`.
    mask: optional bool `[B, L]`, True at real items.
    causal: whether position t sees only positions <= t.
    chunk_size: chunk length of the causal scan (clipped to L).
    query_positions: optional int `[B, T]`: `query` holds the queries of
      these positions alone, `[B, T, H, K]`, and the result is the rows of
      the whole output at them (causal: `_linear_rows`, O(T L)).

  Returns:
    `[B, L, H, F]` (`[B, T, H, F]` with `query_positions`), zero at padded
    positions, in the inputs' dtype.
  """
  q, k, v, mask = _prepare(query, key, value, mask, query_positions)
  phi_q = jax.nn.elu(q) + 1
  phi_k = _zero_masked(jax.nn.elu(k) + 1, mask)
  if causal:
    ones = jnp.ones(v.shape[:-1] + (1,), dtype=v.dtype)
    v_ones = jnp.concatenate([v, ones], axis=-1)
    if query_positions is None:
      num_den = _causal_linear_scan(phi_q, phi_k, v_ones, chunk_size)
    else:
      num_den = _linear_rows(
          phi_q, phi_k, v_ones, query_positions, causal=True
      )
    num, den = num_den[..., :-1], num_den[..., -1:]
  else:
    kv = jnp.einsum('BMHK,BMHF->BHKF', phi_k, v)
    num = jnp.einsum('BLHK,BHKF->BLHF', phi_q, kv)
    den = jnp.einsum('BLHK,BHK->BLH', phi_q, jnp.sum(phi_k, axis=1))[..., None]
  out = num / (den + LINEAR_EPS)
  return _finish(out, _query_mask(mask, query_positions), query, key, value)


def efficient(
    query,
    key,
    value,
    *,
    mask=None,
    causal=False,
    chunk_size=DEFAULT_CHUNK_SIZE,
):
  """Efficient Attention (Shen et al., 2021).

  Softmax of each query over its features, softmax of each key feature over
  the (real) sequence positions, then `out = Q (K^T V)`.

  With `causal=True` the key softmax of query t runs over the positions
  `<= t`: `out_t = sum_c softmax(q_t)_c N_tc / Z_tc` with
  `N_t = sum_{j<=t} exp(k_j) v_j^T` (the chunked scan of `linrec`) and
  `Z_t = sum_{j<=t} exp(k_j)` (a cumulative sum). Keys are shifted by their
  per-feature maximum over the sequence, which cancels in the ratio; a
  prefix whose keys all lie more than ~80 below that maximum would
  underflow to `Z = 0`, and that feature then contributes nothing.

  Args:
    query: `[B, L, H, K]`.
    key: `[B, L, H, K]`.
    value: `[B, L, H, F]`.
    mask: optional bool `[B, L]`, True at real items.
    causal: whether position t sees only positions <= t.
    chunk_size: chunk length of the causal scan (clipped to L).

  Returns:
    `[B, L, H, F]`, zero at padded positions, in the inputs' dtype.
  """
  q, k, v, mask = _prepare(query, key, value, mask)
  q_soft = jax.nn.softmax(q, axis=-1)
  visible = mask[:, :, None, None]
  if causal:
    shift = lax.stop_gradient(
        jnp.max(jnp.where(visible, k, MASK_VALUE), axis=1, keepdims=True)
    )
    exp_k = jnp.exp(jnp.where(visible, k - shift, -jnp.inf))
    total = jnp.cumsum(exp_k, axis=1)
    seen = total > 0
    q_scaled = jnp.where(seen, q_soft / jnp.where(seen, total, 1), 0)
    out = _causal_linear_scan(q_scaled, exp_k, v, chunk_size)
    return _finish(out, mask, query, key, value)
  k_soft = jax.nn.softmax(jnp.where(visible, k, MASK_VALUE), axis=1)
  k_soft = jnp.where(visible, k_soft, 0)
  kv = jnp.einsum('BMHK,BMHF->BHKF', k_soft, v)
  out = jnp.einsum('BLHK,BHKF->BLHF', q_soft, kv)
  return _finish(out, mask, query, key, value)


def linrec_step(query, key, value, state, *, log_decay=None):
  """One position of causal LinRec as a recurrence: the O(1) update.

  `S_t = g S_{t-1} + k_hat_t v_t^T` and `out_t = q_hat_t S_t / sqrt(K)`,
  the state `_causal_linear_scan` carries across chunks, advanced by one
  position (`g` = 1 without a decay). Feeding a sequence's positions one by
  one from a zero state gives `linrec` (or the decayed variants) with
  `causal=True` at every real position.

  Args:
    query: `[B, H, K]`, one position's queries.
    key: `[B, H, K]`.
    value: `[B, H, F]`.
    state: `[B, H, K, F]`, `S_{t-1}` (zeros before the first position), in
      at least float32.
    log_decay: optional `[H]` finite `log g <= 0` (`recurrent_log_decay`).

  Returns:
    `(out [B, H, F] in the inputs' dtype, S_t [B, H, K, F] in the state's)`.
  """
  dtype = jnp.promote_types(_compute_dtype(query, key, value), state.dtype)
  q, k, v = (x.astype(dtype) for x in (query, key, value))
  q_hat = _l2_normalize(jax.nn.elu(q), axis=-1) / math.sqrt(q.shape[-1])
  k_hat = _l2_normalize(jax.nn.elu(k), axis=-1)
  state = state.astype(dtype)
  if log_decay is not None:
    state = jnp.exp(jnp.asarray(log_decay, dtype))[:, None, None] * state
  state = state + jnp.einsum('BHK,BHF->BHKF', k_hat, v)
  out = jnp.einsum('BHK,BHKF->BHF', q_hat, state)
  return out.astype(jnp.result_type(query, key, value)), state


def recurrent_log_decay(name, heads, decay_logit=None):
  """`log g` `[H]` of a `RECURRENT_VARIANTS` member for `linrec_step`.

  None for `linrec` (no decay), `log head_decays(H)` for `linrec_decay`,
  `log sigmoid(decay_logit)` for `linrec_learned_decay` (which needs it).
  """
  if name not in RECURRENT_VARIANTS:
    raise ValueError(
        f'{name!r} has no recurrent form; use one of {RECURRENT_VARIANTS}.'
    )
  if name == 'linrec_decay':
    return jnp.log(head_decays(heads))
  if name == 'linrec_learned_decay':
    return _learned_log_decays(name, decay_logit, heads)
  return None


VARIANTS = {
    'softmax': softmax,
    'linrec': linrec,
    'linear': linear,
    'efficient': efficient,
    'linrec_seqnorm': linrec_seqnorm,
    'linrec_mean': linrec_mean,
    'linrec_decay': linrec_decay,
    'softmax_decay': softmax_decay,
    'linrec_learned_decay': linrec_learned_decay,
    'softmax_learned_decay': softmax_learned_decay,
}
CAUSAL_VARIANTS = frozenset(
    {
        'softmax',
        'linrec',
        'linear',
        'linrec_mean',
        'linrec_decay',
        'softmax_decay',
        'efficient',
        'linrec_learned_decay',
        'softmax_learned_decay',
    }
)
# Variants whose attention layer owns a `[heads]` parameter `decay_logit`,
# passed to the function as `decay_logit=`.
LEARNED_DECAY_VARIANTS = frozenset(
    {'linrec_learned_decay', 'softmax_learned_decay'}
)
# Variants with a weight matrix to drop (`weights_dropout`): RecBole's
# attention dropout. The linear variants never form one.
WEIGHT_DROPOUT_VARIANTS = frozenset(
    {'softmax', 'softmax_decay', 'softmax_learned_decay'}
)
# Variants that take `query_positions=` (queries of a few rows only, for
# the last block of `layers.encoder`), with the causality they take it in.
QUERY_ROW_VARIANTS = {
    'softmax': (False, True),
    'linrec': (False, True),
    'linear': (False, True),
    'linrec_decay': (False, True),
    'linrec_learned_decay': (False, True),
}
# The ones whose query rows cost O(T L) (`_linear_rows`: causal or decayed
# linear forms) are cheaper than the whole computation only for a few rows;
# the encoder gives them at most this many.
MAX_SCORED_ROWS = DEFAULT_CHUNK_SIZE


def attends_query_rows(name, causal, rows):
  """Whether variant `name` with `causal` computes `rows` query rows alone.

  True where it takes `query_positions=` and that costs less than the whole
  output: softmax (quadratic either way) and non-causal `linrec` and
  `linear` (from `K^T V`) at any number of rows, the `_linear_rows` forms
  up to `MAX_SCORED_ROWS`.
  """
  if causal not in QUERY_ROW_VARIANTS.get(name, ()):
    return False
  from_key_sums = name in ('linrec', 'linear') and not causal
  return name == 'softmax' or from_key_sums or rows <= MAX_SCORED_ROWS


# Causal variants whose memory of the past is a fixed-size state per head,
# advanced one position at a time by `linrec_step` (the models' decode mode).
RECURRENT_VARIANTS = ('linrec', 'linrec_decay', 'linrec_learned_decay')
