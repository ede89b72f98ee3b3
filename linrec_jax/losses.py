"""Training losses for next-item prediction: pure `jax.numpy` functions.

Every loss returns a pair `(loss_sum, count)` of float32 scalars instead of a
mean: `loss_sum` is the weighted sum of per-position losses and `count` the sum
of the weights. Pairs from several batches or devices combine by adding both
parts (e.g. `lax.psum`) before dividing once with `safe_mean`, so the result is
the exact mean over all counted positions however the batch was split.

Positions whose target is `PAD_ID` carry no loss (their weight is zero). The
logits column `PAD_ID` (the padding item) is never a valid prediction: the full
softmax treats it as `-inf`, and sampled negatives equal to `PAD_ID` are
dropped.
"""

import functools

import jax
import jax.numpy as jnp

from linrec_jax.constants import PAD_ID

# Logit given to classes that must not take part in a softmax. `-inf` is exact:
# `logsumexp` and its gradient give such classes probability and gradient 0.
_EXCLUDED_LOGIT = -jnp.inf


def safe_mean(loss_sum, count):
  """Divides a loss sum by its count; 0 when nothing was counted.

  Args:
    loss_sum: float scalar (or array), summed losses.
    count: float scalar (or array), summed weights, same shape as `loss_sum`.

  Returns:
    `loss_sum / count` where `count > 0`, else 0 (never NaN, and its gradient
    is 0 rather than NaN when `count == 0`).
  """
  counted = count > 0
  return jnp.where(counted, loss_sum / jnp.where(counted, count, 1), 0.0)


def _position_weights(targets, weights):
  """Float32 weights [...]: `weights` (default 1) where target is not PAD_ID."""
  mask = (targets != PAD_ID).astype(jnp.float32)
  if weights is None:
    return mask
  return mask * jnp.asarray(weights, jnp.float32)


def _weighted_sum(per_position, weights):
  """Returns `(sum(weights * per_position), sum(weights))` as float32."""
  # `where` keeps garbage (inf/NaN) at zero-weight positions out of the sum.
  weighted = jnp.where(weights != 0, per_position * weights, 0.0)
  return jnp.sum(weighted), jnp.sum(weights)


def cross_entropy(logits, targets, weights=None):
  """Full-softmax cross-entropy over all real items, padding column excluded.

  The softmax runs over columns `1..V-1` in float32 (column `PAD_ID` counts as
  `-inf`), so its value, and its gradient, do not depend on column 0.

  Args:
    logits: float [..., V] scores, V = num_items + 1, column 0 = padding.
    targets: int [...] item ids in `0..V-1`; `PAD_ID` (0) means no loss here.
    weights: optional float [...] per-position weights, multiplied with the
      non-padding mask (e.g. to down-weight some positions).

  Returns:
    `(loss_sum, count)`: float32 scalars; `loss_sum` is the weighted sum of
    `-log softmax(logits)[target]` over positions with a non-padding target,
    `count` the sum of their weights. `safe_mean(loss_sum, count)` gives the
    mean.
  """
  logits = jnp.asarray(logits, jnp.float32)
  targets = jnp.asarray(targets, jnp.int32)
  is_padding_column = jnp.arange(logits.shape[-1]) == PAD_ID
  masked = jnp.where(is_padding_column, _EXCLUDED_LOGIT, logits)
  log_normalizer = jax.nn.logsumexp(masked, axis=-1)  # [...]
  # Gather from the unmasked logits: padding targets read the finite column 0
  # instead of -inf, so their (zero-weighted) loss stays finite.
  target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)
  per_position = log_normalizer - target_logits[..., 0]
  return _weighted_sum(per_position, _position_weights(targets, weights))


# Rows of scores `blockwise_cross_entropy` holds at once: 1,024 x 3,417 ML-1M
# items is 14 MB of float32, against 350 MB for the 25,600 positions of one
# batch-128 step of 200-item windows.
BLOCK_ROWS = 1024


def blockwise_cross_entropy(
    states, table, bias, targets, block_rows=BLOCK_ROWS
):
  """`cross_entropy(states @ table.T + bias, targets)`, a block of rows at a
  time, without ever holding the full `[R, V]` scores.

  Rows with a `PAD_ID` target are moved behind the counted ones (a stable
  sort), and blocks holding no counted row are skipped: the cost follows
  the real targets, not the padding. Under differentiation one pass over
  the blocks gives the loss and its gradient together (the loss is a
  scalar, so its gradient is the gradient at cotangent 1, scaled): each
  block's scores are computed once, their softmax multiplied back and the
  target rows subtracted, with no `[R, V]` tensor. Values equal
  `cross_entropy`'s up to float rounding (the sum runs in another order).

  Args:
    states: float [R, D] sequence states at the scored positions.
    table: float [V, D] item table (row `PAD_ID` = padding, excluded from the
      softmax like `cross_entropy`'s column 0).
    bias: float [V] per-item score offsets (zeros for SASRec).
    targets: int [R] target ids; `PAD_ID` means no loss here.
    block_rows: rows scored at once; R is padded up to a multiple.

  Returns:
    `(loss_sum, count)` float32 scalars, as in `cross_entropy` without
    weights.
  """
  targets = jnp.asarray(targets, jnp.int32)
  counted = targets != PAD_ID
  block_rows = max(1, min(block_rows, states.shape[0]))
  order = jnp.argsort(~counted, stable=True)
  loss_sum = _blockwise_loss_sum(
      jnp.take(states, order, axis=0),
      table,
      bias,
      jnp.take(targets, order),
      block_rows,
  )
  return loss_sum, jnp.sum(counted).astype(jnp.float32)


def _in_blocks(x, block_rows):
  """`x` [R, ...] zero-padded to whole blocks: [R / block_rows, block_rows, ...]."""
  pad = -x.shape[0] % block_rows
  x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
  return x.reshape((-1, block_rows) + x.shape[1:])


def _blockwise_pass(states, table, bias, targets, block_rows, with_grads):
  """The loss sum and, if `with_grads`, its gradient w.r.t. states, table
  and bias (float32), one block of rows per scan step.

  Only the scores and their exponentials are `[rows, V]`, each written
  once: the bias enters the scores' product as one more feature, the
  softmax's row scale acts on `[rows, D]` operands and results, the target
  scores are row dot products with the gathered target rows, and the
  `- one_hot(target)` part of the gradient is those rows scattered back
  (`rows` of them), with no `[rows, V]` one-hot or select.
  """
  table32 = jnp.asarray(table, jnp.float32)
  bias32 = jnp.asarray(bias, jnp.float32)
  # The padding column's exclusion rides on the bias, and the bias rides in
  # the product as one more feature (states get a constant 1): the scores
  # come out of it whole, not in a second pass. The excluded logit is the
  # most negative finite float, so no product lane ever forms 0 * -inf.
  masked_bias = bias32.at[PAD_ID].set(jnp.finfo(jnp.float32).min)
  biased_table = jnp.concatenate([table32, masked_bias[:, None]], axis=-1)

  def scored(carry, block_states, block_targets):
    states32 = block_states.astype(jnp.float32)
    ones = jnp.ones_like(states32[:, :1])
    scores = jnp.concatenate([states32, ones], axis=-1) @ biased_table.T
    # One exponential per score: the softmax is exp / total, and its row
    # scale 1 / total moves onto the [rows, D] operands and results of the
    # products below instead of a pass over the [rows, V] block.
    peak = jnp.max(scores, axis=-1, keepdims=True)
    exp = jnp.exp(scores - peak)
    total = jnp.sum(exp, axis=-1, keepdims=True)
    log_normalizer = peak[:, 0] + jnp.log(total[:, 0])
    counted = block_targets != PAD_ID
    target_rows = jnp.take(table32, block_targets, axis=0)
    target_scores = jnp.sum(states32 * target_rows, -1) + bias32[block_targets]
    # PAD targets add nothing: their loss is 0, not inf.
    loss = jnp.sum(jnp.where(counted, log_normalizer - target_scores, 0))
    carry = dict(carry, loss=carry["loss"] + loss)
    if not with_grads:
      return carry, None
    weight = counted.astype(jnp.float32)[:, None]
    scale = weight / total
    # exp.T @ [states * scale, scale]: the table's and the bias's softmax
    # terms in one product.
    scaled = jnp.concatenate([states32 * scale, scale], axis=-1)
    softmax_terms = jax.lax.dot_general(exp, scaled, (((0,), (0,)), ((), ())))
    table_grad = carry["table"] + softmax_terms[:, :-1]
    carry["table"] = table_grad.at[block_targets].add(-states32 * weight)
    bias_grad = carry["bias"] + softmax_terms[:, -1]
    carry["bias"] = bias_grad.at[block_targets].add(-weight[:, 0])
    return carry, (exp @ table32) * scale - target_rows * weight

  def skipped(carry, block_states, block_targets):
    del block_targets
    if not with_grads:
      return carry, None
    return carry, jnp.zeros(block_states.shape, jnp.float32)

  def block(carry, xs):
    # Counted rows come first: a block whose first row has no target has none.
    return jax.lax.cond(xs[1][0] != PAD_ID, scored, skipped, carry, *xs)

  carry = {"loss": jnp.zeros((), jnp.float32)}
  if with_grads:
    carry["table"] = jnp.zeros(table.shape, jnp.float32)
    carry["bias"] = jnp.zeros(bias.shape, jnp.float32)
  blocks = (_in_blocks(states, block_rows), _in_blocks(targets, block_rows))
  carry, d_states = jax.lax.scan(block, carry, blocks)
  if not with_grads:
    return carry["loss"], None
  d_states = d_states.reshape((-1,) + states.shape[1:])[: states.shape[0]]
  grads = (d_states, carry["table"], carry["bias"])
  return carry["loss"], tuple(
      g.astype(x.dtype) for g, x in zip(grads, (states, table, bias))
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _blockwise_loss_sum(states, table, bias, targets, block_rows):
  return _blockwise_pass(states, table, bias, targets, block_rows, False)[0]


def _blockwise_loss_sum_fwd(states, table, bias, targets, block_rows):
  loss_sum, grads = _blockwise_pass(
      states, table, bias, targets, block_rows, True
  )
  return loss_sum, grads


def _blockwise_loss_sum_bwd(block_rows, grads, cotangent):
  del block_rows
  return (*(g * cotangent for g in grads), None)


_blockwise_loss_sum.defvjp(_blockwise_loss_sum_fwd, _blockwise_loss_sum_bwd)


def sampled_softmax(states, item_embeddings, targets, negatives, weights=None):
  """Softmax cross-entropy over the target and a few sampled negatives.

  Scores only `1 + S` items per position instead of the whole catalogue, so
  memory is O(positions * S * D) rather than O(positions * V). Negatives equal
  to the position's target (accidental hits) or to `PAD_ID` are dropped from
  the softmax; duplicate negatives are kept (each counts once per occurrence).
  No log-Q correction is applied, so with non-uniform (e.g. popularity)
  negatives this does not approximate the full softmax: frequently sampled
  items are pushed down more.

  Args:
    states: float [..., D] sequence states at the scored positions.
    item_embeddings: float [V, D] item table (row 0 = padding).
    targets: int [...] target item ids; `PAD_ID` means no loss here.
    negatives: int [..., S] negative item ids per position; leading dims
      broadcast against `targets` (e.g. [S] shares one set across positions).
    weights: optional float [...] per-position weights.

  Returns:
    `(loss_sum, count)` float32 scalars, as in `cross_entropy`.
  """
  targets = jnp.asarray(targets, jnp.int32)
  negatives = jnp.asarray(negatives, jnp.int32)
  target_embeddings = jnp.take(item_embeddings, targets, axis=0)  # [..., D]
  negative_embeddings = jnp.take(item_embeddings, negatives, axis=0)
  target_logits = jnp.einsum(
      "...d,...d->...",
      states,
      target_embeddings,
      preferred_element_type=jnp.float32,
  )
  negative_logits = jnp.einsum(
      "...d,...sd->...s",
      states,
      negative_embeddings,
      preferred_element_type=jnp.float32,
  )
  dropped = (negatives == targets[..., None]) | (negatives == PAD_ID)
  negative_logits = jnp.where(dropped, _EXCLUDED_LOGIT, negative_logits)
  all_logits = jnp.concatenate(
      [target_logits[..., None], negative_logits], axis=-1
  )  # [..., 1 + S]
  per_position = jax.nn.logsumexp(all_logits, axis=-1) - target_logits
  return _weighted_sum(per_position, _position_weights(targets, weights))


def bpr(pos_scores, neg_scores, weights):
  """Bayesian personalised ranking loss: `-log sigmoid(pos - neg)`.

  With several negatives per position the per-position loss is their mean, so
  `count` still counts positions.

  Args:
    pos_scores: float [...] scores of the positive items.
    neg_scores: float [...] (one negative per position) or [..., S] scores of
      the negatives.
    weights: float [...] per-position weights; 0 means no loss here (BPR sees
      no item ids, so the caller passes e.g. `targets != PAD_ID`).

  Returns:
    `(loss_sum, count)` float32 scalars: the weighted sum of per-position losses
    and the sum of `weights`.
  """
  pos_scores = jnp.asarray(pos_scores, jnp.float32)
  neg_scores = jnp.asarray(neg_scores, jnp.float32)
  if neg_scores.ndim == pos_scores.ndim:
    neg_scores = neg_scores[..., None]
  # -log sigmoid(x) == softplus(-x), stable for large |x|.
  per_pair = jax.nn.softplus(neg_scores - pos_scores[..., None])  # [..., S]
  per_position = jnp.mean(per_pair, axis=-1)
  weights = jnp.broadcast_to(
      jnp.asarray(weights, jnp.float32), per_position.shape
  )
  return _weighted_sum(per_position, weights)
