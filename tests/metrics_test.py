"""Tests for linrec_jax.metrics: hand-made rankings, expected values by hand."""

import jax
import jax.numpy as jnp
import numpy as np

from linrec_jax import metrics
from linrec_jax.constants import PAD_ID

# V = 6 (5 items). Column 0 (padding) holds the highest score in every row.
_SCORES = np.array(
    [
        [9.0, 0.1, 0.5, 0.3, 0.5, 0.5],  # target 2 tied with items 4 and 5
        [9.0, 0.1, 0.5, 0.3, 0.5, 0.5],  # target 3 below items 2, 4, 5
        [9.0, 0.9, 0.2, 0.3, 0.4, 0.5],  # target 1 strictly best
        [9.0, 0.9, 0.2, 0.3, 0.4, 0.5],  # target 2 strictly worst
    ],
    np.float32,
)
_TARGETS = np.array([2, 3, 1, 2])


def test_target_ranks_ties_count_against_target_and_padding_ignored():
  ranks = metrics.target_ranks(_SCORES, _TARGETS)
  assert ranks.dtype == np.int32
  np.testing.assert_array_equal(ranks, [3, 4, 1, 5])


def test_all_equal_scores_rank_last_and_score_zero():
  num_items = 12
  scores = np.full((2, num_items + 1), 0.25, np.float32)
  ranks = metrics.target_ranks(scores, np.array([1, 7]))
  np.testing.assert_array_equal(ranks, [num_items, num_items])
  per_example = metrics.rank_metrics(ranks, ks=(10,))
  np.testing.assert_array_equal(per_example['hit@10'], [0.0, 0.0])
  np.testing.assert_array_equal(per_example['ndcg@10'], [0.0, 0.0])
  np.testing.assert_array_equal(per_example['mrr@10'], [0.0, 0.0])


def test_exclusion_removes_items_but_never_the_target():
  scores = np.array([[5.0, 0.9, 0.8, 0.7, 0.1]], np.float32)
  target = np.array([3])
  np.testing.assert_array_equal(metrics.target_ranks(scores, target), [3])
  # Item 1 goes; the target 3 is listed but stays; padding 0 is no item.
  exclude = np.array([[1, 3, 0]])
  np.testing.assert_array_equal(
      metrics.target_ranks(scores, target, exclude=exclude), [2]
  )
  # Excluding items below the target changes nothing.
  np.testing.assert_array_equal(
      metrics.target_ranks(scores, target, exclude=np.array([[4, 0, 0]])), [3]
  )


def test_exclusion_is_per_row():
  scores = np.array([[0.0, 0.9, 0.8, 0.7], [0.0, 0.9, 0.8, 0.7]], np.float32)
  targets = np.array([3, 3])
  exclude = np.array([[1, 2], [0, 0]])
  np.testing.assert_array_equal(
      metrics.target_ranks(scores, targets, exclude=exclude), [1, 3]
  )


def test_nan_scores_never_help_the_target():
  scores = np.array(
      [
          [0.0, np.nan, 0.5, 0.2, 0.1],  # NaN other item ranks above target 2
          [0.0, 0.3, np.nan, 0.2, 0.1],  # NaN target ranks last
          [np.nan, 0.3, 0.9, 0.2, 0.1],  # NaN padding is ignored
      ],
      np.float32,
  )
  ranks = metrics.target_ranks(scores, np.array([2, 2, 2]))
  np.testing.assert_array_equal(ranks, [2, 4, 1])


def test_rank_metrics_hand_values():
  per_example = metrics.rank_metrics(np.array([1, 3, 7, 11]), ks=(5, 10))
  assert sorted(per_example) == sorted(
      ['hit@5', 'ndcg@5', 'mrr@5', 'hit@10', 'ndcg@10', 'mrr@10']
  )
  expected = {
      'hit@5': [1.0, 1.0, 0.0, 0.0],
      'ndcg@5': [1.0, 0.5, 0.0, 0.0],  # 1/log2(2), 1/log2(4)
      'mrr@5': [1.0, 1 / 3, 0.0, 0.0],
      'hit@10': [1.0, 1.0, 1.0, 0.0],
      'ndcg@10': [1.0, 0.5, 1 / 3, 0.0],  # 1/log2(8) = 1/3
      'mrr@10': [1.0, 1 / 3, 1 / 7, 0.0],
  }
  for name, values in expected.items():
    assert per_example[name].dtype == np.float32
    np.testing.assert_allclose(per_example[name], values, rtol=1e-6)


def test_rank_metrics_default_ks():
  per_example = metrics.rank_metrics(np.array([20, 21]))
  assert len(per_example) == 9
  np.testing.assert_array_equal(per_example['hit@20'], [1.0, 0.0])
  np.testing.assert_array_equal(per_example['hit@5'], [0.0, 0.0])


def test_sampled_ranks_ties_and_ignored_negatives():
  scores = np.array(
      [
          [9.0, 0.5, 0.5, 0.1, 0.7, 0.2],
          [9.0, 0.5, 0.5, 0.1, 0.7, 0.2],
      ],
      np.float32,
  )
  targets = np.array([2, 3])
  # Row 0: 1 ties (counts), 4 above, 3 below -> rank 3.
  # Row 1: the target itself and padding are ignored; 5 above -> rank 2.
  negatives = np.array([[1, 4, 3], [3, 0, 5]])
  np.testing.assert_array_equal(
      metrics.sampled_ranks(scores, targets, negatives), [3, 2]
  )


def test_sampled_ranks_all_equal_scores_rank_last():
  scores = np.zeros((1, 11), np.float32)
  negatives = np.arange(2, 11)[None]  # 9 negatives
  np.testing.assert_array_equal(
      metrics.sampled_ranks(scores, np.array([1]), negatives), [10]
  )


def test_summarize_ignores_invalid_rows_even_nan():
  per_example = {
      'hit@10': np.array([1.0, 0.0, np.nan, 1.0], np.float32),
      'ndcg@10': np.array([1.0, 0.5, np.nan, 0.25], np.float32),
  }
  valid = np.array([True, True, False, True])
  sums, count = metrics.summarize(per_example, valid)
  np.testing.assert_allclose(sums['hit@10'], 2.0)
  np.testing.assert_allclose(sums['ndcg@10'], 1.75)
  assert count == 3


def test_jit_equals_eager():
  exclude = np.array([[1, 0], [4, 5], [0, 0], [3, 3]])
  eager = metrics.target_ranks(_SCORES, _TARGETS, exclude=exclude)
  jitted = jax.jit(metrics.target_ranks)(_SCORES, _TARGETS, exclude=exclude)
  np.testing.assert_array_equal(jitted, eager)
  np.testing.assert_array_equal(eager, [3, 2, 1, 4])
  negatives = np.array([[1, 3], [2, 4], [2, 5], [1, 3]])
  np.testing.assert_array_equal(
      jax.jit(metrics.sampled_ranks)(_SCORES, _TARGETS, negatives),
      metrics.sampled_ranks(_SCORES, _TARGETS, negatives),
  )


def test_seen_in_top_counts_history_items_among_the_best():
  # 12 items; scores descending with the item id except where set.
  scores = np.concatenate(
      [np.full((2, 1), 99.0), np.tile(np.arange(12, 0, -1.0), (2, 1))], 1
  ).astype(
      np.float32
  )  # item i scores 13 - i: top 10 = items 1..10
  history = np.array([[1, 2, 11, 12, 0], [0, 0, 0, 0, 0]])
  seen = metrics.item_mask(13, history)
  np.testing.assert_array_equal(
      metrics.seen_in_top(scores, seen, 10), [2.0, 0.0]
  )
  # Padding never counts as seen nor as a top item.
  assert not bool(np.asarray(seen)[:, 0].any())
  np.testing.assert_array_equal(
      metrics.seen_in_top(scores, seen, 1), [1.0, 0.0]
  )


def test_history_excluded_metrics_hand_values():
  # 6 items. Row 0: ranking 5 > 4 > 3 > 2 > 1 > 6, target 3, history {5, 1}.
  # Kept: rank 3. Excluded: 5 goes (above), 1 is below: rank 2.
  scores = np.array([[9.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.0]], np.float32)
  target, history = np.array([3]), np.array([[5, 1, 0]])
  kept = metrics.rank_metrics(metrics.target_ranks(scores, target), (2, 5))
  both = metrics.history_excluded_metrics(scores, target, history, (2, 5))
  np.testing.assert_allclose(kept['ndcg@5'], [1 / np.log2(4)])
  np.testing.assert_allclose(kept['hit@2'], [0.0])
  np.testing.assert_allclose(both['ndcg@5_nohist'], [1 / np.log2(3)])
  np.testing.assert_allclose(both['hit@2_nohist'], [1.0])
  np.testing.assert_allclose(both['mrr@5_nohist'], [0.5])
  # Top 10 holds all 6 items: both history items are in it.
  np.testing.assert_allclose(both['seen@10'], [2.0])
  assert set(both) == {
      f'{m}@{k}_nohist' for m in ('hit', 'ndcg', 'mrr') for k in (2, 5)
  } | {'seen@10'}


def test_seen_input_counts_the_top_items_the_model_reads():
  # Items 1..5, scores descending with the id: the top 3 are 5, 4, 3.
  scores = jnp.array([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]] * 3)
  inputs = jnp.array(
      [
          [4, 2, 1, PAD_ID],  # reads 4 of the top 3
          [5, 3, 4, 4],  # all three (4 twice counts once)
          [6, 6, PAD_ID, PAD_ID],  # 6 = a mask token, not an item
      ],
      jnp.int32,
  )
  np.testing.assert_allclose(
      metrics.seen_input_in_top(scores, inputs, k=3), [1.0, 3.0, 0.0]
  )
