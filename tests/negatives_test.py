"""Tests for linrec_jax.negatives: validity over many draws, reproducibility."""

import jax
import numpy as np
import pytest

from linrec_jax import negatives

_NUM_ITEMS = 12
_ROWS = 2000  # many draws in one call


def _targets(seed=0, rows=_ROWS):
  return np.random.default_rng(seed).integers(1, _NUM_ITEMS + 1, size=rows)


def _assert_valid(ids, targets, num_items, distinct):
  ids = np.asarray(ids)
  assert ids.dtype == np.int32
  assert ids.min() >= 1 and ids.max() <= num_items
  assert not np.any(ids == np.asarray(targets)[..., None])
  if distinct:
    ordered = np.sort(ids, axis=-1)
    assert np.all(ordered[..., 1:] != ordered[..., :-1])


@pytest.mark.parametrize('replace', [False, True])
def test_uniform_valid_over_many_draws(replace):
  targets = _targets()
  ids = negatives.sample_uniform(
      jax.random.key(0), targets, _NUM_ITEMS, 5, replace=replace
  )
  assert ids.shape == (_ROWS, 5)
  _assert_valid(ids, targets, _NUM_ITEMS, distinct=not replace)
  # Every non-target item is equally likely: per row, each of the 11
  # non-target items is among the 5 distinct draws with probability 5/11, or
  # is any one independent draw with probability 1/11.
  ids = np.asarray(ids)
  expected, tolerance = (1 / 11, 0.015) if replace else (5 / 11, 0.05)
  for item in range(1, _NUM_ITEMS + 1):
    rows = ids[targets != item]
    if replace:
      rate = np.mean(rows == item)
    else:
      rate = np.mean(np.any(rows == item, axis=-1))
    assert abs(rate - expected) < tolerance, (item, rate)


def test_uniform_all_other_items_when_num_is_num_items_minus_one():
  targets = np.array([1, 6, 12])
  ids = negatives.sample_uniform(
      jax.random.key(1), targets, _NUM_ITEMS, _NUM_ITEMS - 1
  )
  for row, target in zip(np.asarray(ids), targets):
    assert sorted(row) == [i for i in range(1, _NUM_ITEMS + 1) if i != target]


def test_uniform_order_is_shuffled():
  # Floyd's algorithm alone puts large ids late; the shuffle removes that.
  ids = np.asarray(
      negatives.sample_uniform(jax.random.key(2), _targets(), _NUM_ITEMS, 5)
  )
  first, last = ids[:, 0].mean(), ids[:, -1].mean()
  assert abs(first - last) < 0.5


def test_uniform_rejects_too_many_distinct():
  with pytest.raises(ValueError):
    negatives.sample_uniform(jax.random.key(0), np.array([1]), 5, 5)


def test_uniform_keeps_batch_shape_and_padding_rows_valid():
  targets = np.array([[1, 0, 3], [4, 5, 0]])
  ids = negatives.sample_uniform(jax.random.key(3), targets, 6, 4)
  assert ids.shape == (2, 3, 4)
  _assert_valid(ids, targets, 6, distinct=True)


@pytest.mark.parametrize('replace', [False, True])
def test_same_key_same_negatives_and_jit_equals_eager(replace):
  targets = _targets(rows=16)
  probabilities = np.arange(_NUM_ITEMS + 1, dtype=np.float32)

  def uniform(key):
    return negatives.sample_uniform(
        key, targets, _NUM_ITEMS, 4, replace=replace
    )

  def popularity(key):
    return negatives.sample_popularity(
        key, targets, probabilities, 4, replace=replace
    )

  for sample in (uniform, popularity):
    eager = np.asarray(sample(jax.random.key(7)))
    jitted = jax.jit(sample)
    np.testing.assert_array_equal(jitted(jax.random.key(7)), eager)
    np.testing.assert_array_equal(jitted(jax.random.key(7)), eager)
    assert np.any(np.asarray(jitted(jax.random.key(8))) != eager)


def _popularity():
  """Item weights for V = 13: padding has mass (ignored), items 11, 12 none."""
  weights = np.arange(_NUM_ITEMS + 1, dtype=np.float32)
  weights[0] = 100.0
  weights[11:] = 0.0
  return weights


@pytest.mark.parametrize('replace', [False, True])
def test_popularity_valid_and_never_zero_mass(replace):
  targets = _targets()
  ids = negatives.sample_popularity(
      jax.random.key(4), targets, _popularity(), 6, replace=replace
  )
  assert ids.shape == (_ROWS, 6)
  _assert_valid(ids, targets, _NUM_ITEMS, distinct=not replace)
  assert not np.any(np.asarray(ids) >= 11)


def test_popularity_fills_with_zero_mass_items_when_needed():
  # 10 items have mass; a target among them leaves 9, so 2 slots take the
  # zero-mass items 11 and 12.
  targets = np.array([3, 10])
  ids = negatives.sample_popularity(
      jax.random.key(5), targets, _popularity(), _NUM_ITEMS - 1
  )
  for row, target in zip(np.asarray(ids), targets):
    assert sorted(row) == [i for i in range(1, _NUM_ITEMS + 1) if i != target]
    assert sorted(row[-2:]) == [11, 12]  # drawn after every positive item


@pytest.mark.parametrize('replace', [False, True])
def test_popularity_first_draw_follows_probabilities(replace):
  # Targets all 10: the others' weights 1..9 (sum 45) set the frequencies.
  rows = 4000
  targets = np.full(rows, 10)
  ids = np.asarray(
      negatives.sample_popularity(
          jax.random.key(6), targets, _popularity(), 1, replace=replace
      )
  )
  frequencies = np.bincount(ids[:, 0], minlength=_NUM_ITEMS + 1) / rows
  expected = np.zeros(_NUM_ITEMS + 1)
  expected[1:10] = np.arange(1, 10) / 45
  np.testing.assert_allclose(frequencies, expected, atol=0.025)


def test_popularity_with_replacement_when_target_holds_most_mass():
  weights = np.zeros(_NUM_ITEMS + 1, np.float32)
  weights[5] = 1e6
  weights[_NUM_ITEMS] = 1e-3  # the only other item with mass is the last
  ids = negatives.sample_popularity(
      jax.random.key(9), np.full(50, 5), weights, 8, replace=True
  )
  np.testing.assert_array_equal(ids, _NUM_ITEMS)
  weights[1], weights[_NUM_ITEMS] = 1e-3, 0.0  # now only the first item
  ids = negatives.sample_popularity(
      jax.random.key(9), np.full(50, 5), weights, 8, replace=True
  )
  np.testing.assert_array_equal(ids, 1)
