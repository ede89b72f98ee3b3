"""Tests for linrec_jax.losses: references written out in NumPy by hand."""

import jax
import jax.numpy as jnp
from jax import test_util
import numpy as np
import pytest

from linrec_jax import losses

# [B=2, T=3, V=5]: 4 real items; column 0 is padding.
_LOGITS = np.array(
    [
        [
            [0.3, 1.0, -2.0, 0.5, 0.0],
            [5.0, 0.1, 0.2, 0.3, 0.4],
            [-1.0, 2.0, 2.0, -3.0, 1.5],
        ],
        [
            [0.0, -0.5, 0.7, 3.0, -1.2],
            [1.0, 1.0, 1.0, 1.0, 1.0],
            [2.0, 0.0, 0.0, 0.0, 0.0],
        ],
    ],
    np.float32,
)
_TARGETS = np.array([[1, 0, 4], [2, 3, 0]], np.int32)


def _reference_cross_entropy(logits, targets, weights=None):
  """NumPy log-softmax over columns 1.. only; target 0 contributes nothing."""
  items = logits[..., 1:].astype(np.float64)
  shifted = items - items.max(axis=-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
  total, count = 0.0, 0.0
  for index in np.ndindex(targets.shape):
    target = targets[index]
    if target == 0:
      continue
    weight = 1.0 if weights is None else weights[index]
    total += -weight * log_probs[index][target - 1]
    count += weight
  return total, count


def test_cross_entropy_matches_numpy_log_softmax():
  loss_sum, count = losses.cross_entropy(_LOGITS, _TARGETS)
  expected_sum, expected_count = _reference_cross_entropy(_LOGITS, _TARGETS)
  assert loss_sum.dtype == jnp.float32
  np.testing.assert_allclose(loss_sum, expected_sum, rtol=1e-5)
  assert count == expected_count == 4


def test_cross_entropy_hand_value_uniform_logits():
  # 4 items with equal logits: each target costs log(4); padding logit 9 is
  # ignored (it would otherwise dominate the softmax).
  logits = np.array([[9.0, 1.0, 1.0, 1.0, 1.0]], np.float32)
  loss_sum, count = losses.cross_entropy(logits, np.array([3]))
  np.testing.assert_allclose(loss_sum, np.log(4.0), rtol=1e-6)
  assert count == 1


def test_cross_entropy_ignores_padding_column():
  raised = _LOGITS.copy()
  raised[..., 0] = 1e4
  np.testing.assert_allclose(
      losses.cross_entropy(raised, _TARGETS)[0],
      losses.cross_entropy(_LOGITS, _TARGETS)[0],
      rtol=1e-6,
  )


def test_cross_entropy_weights():
  weights = np.array([[2.0, 7.0, 0.5], [0.0, 1.0, 3.0]], np.float32)
  loss_sum, count = losses.cross_entropy(_LOGITS, _TARGETS, weights)
  expected_sum, expected_count = _reference_cross_entropy(
      _LOGITS, _TARGETS, weights
  )
  np.testing.assert_allclose(loss_sum, expected_sum, rtol=1e-5)
  np.testing.assert_allclose(count, expected_count)  # 2 + 0.5 + 0 + 1


def test_mean_with_no_counted_positions_is_zero():
  targets = np.zeros((2, 3), np.int32)
  loss_sum, count = losses.cross_entropy(_LOGITS, targets)
  assert count == 0 and loss_sum == 0
  assert losses.safe_mean(loss_sum, count) == 0
  grads = jax.grad(
      lambda x: losses.safe_mean(*losses.cross_entropy(x, targets))
  )(jnp.asarray(_LOGITS))
  np.testing.assert_array_equal(grads, 0.0)


def test_safe_mean():
  np.testing.assert_allclose(losses.safe_mean(6.0, 4.0), 1.5)
  np.testing.assert_allclose(losses.safe_mean(0.0, 0.0), 0.0)


def test_cross_entropy_stable_for_huge_logits_and_bfloat16():
  logits = np.array([[0.0, 1e30, -1e30, 0.0]], np.float32)
  loss_sum, _ = losses.cross_entropy(logits, np.array([2]))
  np.testing.assert_allclose(loss_sum, 2e30, rtol=1e-6)
  loss_sum, _ = losses.cross_entropy(logits, np.array([1]))
  assert loss_sum == 0.0
  low = jnp.asarray(_LOGITS, jnp.bfloat16)
  loss_sum, _ = losses.cross_entropy(low, _TARGETS)
  assert loss_sum.dtype == jnp.float32
  expected, _ = _reference_cross_entropy(
      np.asarray(low.astype(jnp.float32)), _TARGETS
  )
  np.testing.assert_allclose(loss_sum, expected, rtol=1e-5)


def test_cross_entropy_gradient_finite_and_zero_on_padding():
  def mean_loss(logits):
    return losses.safe_mean(*losses.cross_entropy(logits, _TARGETS))

  grads = jax.grad(mean_loss)(jnp.asarray(_LOGITS))
  assert np.all(np.isfinite(grads))
  np.testing.assert_array_equal(grads[..., 0], 0.0)
  np.testing.assert_array_equal(grads[0, 1], 0.0)  # target 0: no loss
  # Gradient of a mean CE: (softmax - onehot) / count on counted rows, with
  # the softmax over columns 1.. only.
  items = np.exp(_LOGITS[..., 1:])
  softmax = items / items.sum(axis=-1, keepdims=True)
  expected = np.zeros_like(_LOGITS)
  for index in zip(*np.nonzero(_TARGETS)):
    expected[index][1:] = softmax[index]
    expected[index][_TARGETS[index]] -= 1.0
  np.testing.assert_allclose(grads, expected / 4, atol=1e-6)
  test_util.check_grads(
      mean_loss, (jnp.asarray(_LOGITS),), order=1, modes=['rev']
  )


def test_cross_entropy_jit_equals_eager():
  eager = losses.cross_entropy(_LOGITS, _TARGETS)
  jitted = jax.jit(losses.cross_entropy)(_LOGITS, _TARGETS)
  np.testing.assert_allclose(jitted, eager, rtol=1e-6)


# Sampled softmax: V=6 (5 items), D=2.
_EMBEDDINGS = np.array(
    [[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5], [0.5, -2.0]],
    np.float32,
)


def test_sampled_softmax_masks_accidental_hits_and_padding():
  states = np.array([[1.0, 2.0], [0.5, -1.0]], np.float32)
  targets = np.array([2, 5])
  # Row 0 lists its target 2 and padding among the negatives: both dropped.
  negatives = np.array([[1, 2, 0, 4], [3, 3, 1, 2]])
  loss_sum, count = losses.sampled_softmax(
      states, _EMBEDDINGS, targets, negatives
  )
  # Row 0: scores target 2 -> 2.0; negatives 1 -> 1.0, 4 -> 0.0.
  row0 = -2.0 + np.log(np.exp(2.0) + np.exp(1.0) + np.exp(0.0))
  # Row 1: target 5 -> 2.25; negatives 3 -> -0.5 (twice), 1 -> 0.5, 2 -> -1.
  row1 = -2.25 + np.log(
      np.exp(2.25) + 2 * np.exp(-0.5) + np.exp(0.5) + np.exp(-1.0)
  )
  np.testing.assert_allclose(loss_sum, row0 + row1, rtol=1e-6)
  assert count == 2


def test_sampled_softmax_with_all_items_equals_full_softmax():
  rng = np.random.default_rng(0)
  states = rng.normal(size=(2, 3, 2)).astype(np.float32)
  targets = np.array([[1, 0, 4], [5, 3, 2]])
  every_item = np.broadcast_to(np.arange(1, 6), (2, 3, 5))  # targets included
  sampled = losses.sampled_softmax(states, _EMBEDDINGS, targets, every_item)
  full = losses.cross_entropy(states @ _EMBEDDINGS.T, targets)
  np.testing.assert_allclose(sampled, full, rtol=1e-5)
  shared = losses.sampled_softmax(states, _EMBEDDINGS, targets, np.arange(1, 6))
  np.testing.assert_allclose(shared, full, rtol=1e-5)


def test_sampled_softmax_gradient_finite_with_padded_positions():
  states = jnp.ones((2, 2), jnp.float32)
  targets = np.array([0, 3])
  negatives = np.array([[0, 0], [3, 0]])  # row 1 keeps only its target

  def mean_loss(states, embeddings):
    return losses.safe_mean(
        *losses.sampled_softmax(states, embeddings, targets, negatives)
    )

  value = mean_loss(states, _EMBEDDINGS)
  assert value == 0.0  # only the target is left: log 1
  grads = jax.grad(mean_loss, argnums=(0, 1))(states, jnp.asarray(_EMBEDDINGS))
  for grad in grads:
    assert np.all(np.isfinite(grad))


def test_bpr_hand_values():
  pos = np.array([2.0, 0.0, 5.0], np.float32)
  neg = np.array([1.0, 0.0, -100.0], np.float32)
  weights = np.array([1.0, 1.0, 0.0], np.float32)
  loss_sum, count = losses.bpr(pos, neg, weights)
  # -log sigmoid(1) = log(1 + e^-1); -log sigmoid(0) = log 2.
  np.testing.assert_allclose(
      loss_sum, np.log1p(np.exp(-1.0)) + np.log(2.0), rtol=1e-6
  )
  assert count == 2


def test_bpr_several_negatives_average_per_position():
  pos = np.array([0.0], np.float32)
  neg = np.array([[0.0, 1000.0]], np.float32)  # log 2 and 1000
  loss_sum, count = losses.bpr(pos, neg, np.ones(1, np.float32))
  np.testing.assert_allclose(loss_sum, (np.log(2.0) + 1000.0) / 2, rtol=1e-6)
  assert count == 1


@pytest.mark.parametrize('fn', ['cross_entropy', 'sampled_softmax', 'bpr'])
def test_losses_jit_equal_eager(fn):
  if fn == 'cross_entropy':
    args = (_LOGITS, _TARGETS)
  elif fn == 'sampled_softmax':
    args = (
        np.ones((2, 2), np.float32),
        _EMBEDDINGS,
        np.array([1, 2]),
        np.array([[3, 4], [2, 5]]),
    )
  else:
    args = (np.ones(3), np.zeros((3, 2)), np.ones(3))
  function = getattr(losses, fn)
  np.testing.assert_allclose(
      jax.jit(function)(*args), function(*args), rtol=1e-6
  )


def _reference_blockwise_grads(states, table, bias, targets):
  """NumPy gradients of the summed full-softmax loss of `states @ table.T +
  bias`: `d_scores = softmax - one_hot` at counted rows, column 0 excluded."""
  scores = states.astype(np.float64) @ table.T.astype(np.float64) + bias
  scores[:, 0] = -np.inf
  probs = np.exp(scores - scores.max(axis=1, keepdims=True))
  probs /= probs.sum(axis=1, keepdims=True)
  d_scores = probs.copy()
  d_scores[np.arange(len(targets)), targets] -= 1.0
  d_scores[targets == 0] = 0.0
  return d_scores @ table, d_scores.T @ states, d_scores.sum(axis=0)


def _blockwise_inputs(rows=11, dim=3, items=6, padded=(1, 4, 5, 6, 7, 8)):
  rng = np.random.default_rng(4)
  states = rng.normal(size=(rows, dim)).astype(np.float32)
  table = rng.normal(size=(items + 1, dim)).astype(np.float32)
  bias = rng.normal(size=items + 1).astype(np.float32)
  targets = rng.integers(1, items + 1, rows).astype(np.int32)
  targets[list(padded)] = 0  # Whole blocks of padding once sorted.
  return states, table, bias, targets


@pytest.mark.parametrize('block_rows', [1, 2, 4, 5, 11, 64])
def test_blockwise_cross_entropy_matches_numpy_value_and_gradient(block_rows):
  states, table, bias, targets = _blockwise_inputs()

  def loss(states, table, bias):
    return losses.blockwise_cross_entropy(
        states, table, bias, targets, block_rows
    )[0]

  loss_sum, count = losses.blockwise_cross_entropy(
      states, table, bias, targets, block_rows
  )
  expected_sum, expected_count = _reference_cross_entropy(
      states @ table.T + bias, targets
  )
  np.testing.assert_allclose(loss_sum, expected_sum, rtol=1e-5)
  assert count == expected_count == 5
  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(states, table, bias)
  for got, want in zip(
      grads, _reference_blockwise_grads(states, table, bias, targets)
  ):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_blockwise_cross_entropy_adds_up_a_target_repeated_in_a_block():
  # The target rows are scattered back into the table gradient: rows that
  # share a target must add, not overwrite.
  states, table, bias, _ = _blockwise_inputs()
  targets = np.array([3, 3, 0, 3, 2, 2, 0, 0, 0, 0, 0], np.int32)
  grads = jax.grad(
      lambda *a: losses.blockwise_cross_entropy(*a, targets, 8)[0],
      argnums=(0, 1, 2),
  )(states, table, bias)
  for got, want in zip(
      grads, _reference_blockwise_grads(states, table, bias, targets)
  ):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_blockwise_cross_entropy_scales_the_gradient_by_the_cotangent():
  states, table, bias, targets = _blockwise_inputs()
  loss = (
      lambda s: 2.5
      * losses.blockwise_cross_entropy(s, table, bias, targets, 4)[0]
  )
  want = _reference_blockwise_grads(states, table, bias, targets)[0]
  np.testing.assert_allclose(jax.grad(loss)(states), 2.5 * want, rtol=1e-4)


def test_blockwise_cross_entropy_of_only_padding_is_zero():
  states, table, bias, _ = _blockwise_inputs()
  targets = np.zeros(len(states), np.int32)
  loss_sum, count = losses.blockwise_cross_entropy(
      states, table, bias, targets, 4
  )
  assert loss_sum == 0.0 and count == 0.0
  grads = jax.grad(
      lambda *a: losses.blockwise_cross_entropy(*a, targets, 4)[0],
      argnums=(0, 1, 2),
  )(states, table, bias)
  assert all(not np.any(np.asarray(g)) for g in grads)
