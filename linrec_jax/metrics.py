"""Ranking metrics for next-item evaluation: pure `jax.numpy` functions.

Ranks are 1-based and ties count against the target: an item that scores the
same as the target ranks above it. A model that gives every item the same score
therefore ranks each target last (rank `num_items`) and scores ~0, instead of
looking perfect. The padding column (`PAD_ID`) never takes part in a ranking.

NaN scores never help a target: a NaN target score counts as `-inf` (every
other candidate ranks above it) and a NaN score of another item counts as
`+inf` (it ranks above the target).

Evaluators compute per-example metrics with `rank_metrics`, add them over
batches with `summarize`, and divide the sums by the count once at the end.
"""

import jax
import jax.numpy as jnp

from linrec_jax.constants import PAD_ID

DEFAULT_KS = (5, 10, 20)
# Metric names with this suffix rank with the user's history excluded (as
# SASRec+, LRURec and gSASRec report); names without it keep the history in
# the ranking (as RecBole does for sequential models).
HISTORY_EXCLUDED = '_nohist'
# Mean number of already-seen items among the top 10 (history kept).
SEEN_AT_10 = 'seen@10'
# Of those, the ones in the model's own input (the last N items it reads):
# items it could see and still ranks high; the rest are older than N.
SEEN_INPUT_AT_10 = 'seen_input@10'


def _target_scores(scores, targets):
  """Float [B, 1] score of each row's target, NaN replaced by -inf."""
  target_scores = jnp.take_along_axis(scores, targets[:, None], axis=-1)
  return jnp.where(jnp.isnan(target_scores), -jnp.inf, target_scores)


def _not_below(other_scores, target_scores):
  """Bool: other item scores >= target score, NaN other scores counting."""
  return jnp.isnan(other_scores) | (other_scores >= target_scores)


def item_mask(num_columns, items):
  """Bool [B, V]: True at the ids listed in `items` (int [B, M]), PAD_ID off.

  Args:
    num_columns: V, the number of score columns (num_items + 1).
    items: int [B, M] item ids, `PAD_ID`-padded.
  """
  items = jnp.asarray(items, jnp.int32)
  rows = jnp.arange(items.shape[0])[:, None]
  listed = (
      jnp.zeros((items.shape[0], num_columns), bool).at[rows, items].set(True)
  )
  return listed.at[:, PAD_ID].set(False)


def seen_in_top(scores, seen, k):
  """Float [B]: how many of the `k` best-scored real items are in `seen`.

  Args:
    scores: float [B, V] scores of all items; column `PAD_ID` never counts
      as a top item.
    seen: bool [B, V] (e.g. `item_mask` of the user's history).
    k: the cut-off (all real items when there are fewer than k).
  """
  scores = jnp.asarray(scores, jnp.float32)
  real = jnp.arange(scores.shape[-1]) != PAD_ID
  scores = jnp.where(real & ~jnp.isnan(scores), scores, -jnp.inf)
  _, top = jax.lax.top_k(scores, min(k, scores.shape[-1] - 1))
  return jnp.sum(
      jnp.take_along_axis(seen, top, axis=-1), axis=-1, dtype=jnp.float32
  )


def target_ranks(scores, targets, *, exclude=None):
  """1-based rank of each target among all real items, ties against it.

  `rank = 1 + #{i : i != target, i != PAD_ID, i not excluded,
  score_i >= score_target}`.

  Args:
    scores: float [B, V] scores of all items, V = num_items + 1, column
      `PAD_ID` ignored whatever its value.
    targets: int [B] target item ids in `1..V-1`. Rows with target `PAD_ID`
      get a meaningless rank; mask them out with the evaluation `valid` flag.
    exclude: optional int [B, M] item ids to drop from each row's ranking
      (e.g. the user's history), `PAD_ID`-padded. The row's target is never
      dropped, even when it is listed.

  Returns:
    int32 [B] ranks in `1..num_items`.
  """
  excluded = None
  if exclude is not None:
    excluded = item_mask(jnp.shape(scores)[1], exclude)
  return _ranks(scores, targets, excluded)


def _ranks(scores, targets, excluded=None):
  """`target_ranks` with the excluded items given as a bool [B, V] mask."""
  scores = jnp.asarray(scores)
  targets = jnp.asarray(targets, jnp.int32)
  columns = jnp.arange(scores.shape[1])
  is_target = columns == targets[:, None]  # [B, V]
  competing = (columns != PAD_ID) & ~is_target
  if excluded is not None:
    competing = competing & ~excluded
  above = _not_below(scores, _target_scores(scores, targets)) & competing
  return (1 + jnp.sum(above, axis=-1)).astype(jnp.int32)


def sampled_ranks(scores, targets, negatives):
  """1-based rank of each target among itself and its sampled negatives.

  For the sampled protocols (uni100 / pop100). Ties count against the target.
  Negatives equal to the target or to `PAD_ID` are ignored; a negative listed
  twice counts twice (the samplers in `negatives` return distinct ids).

  Args:
    scores: float [B, V] scores of all items.
    targets: int [B] target item ids.
    negatives: int [B, S] negative item ids.

  Returns:
    int32 [B] ranks in `1..S+1`.
  """
  targets = jnp.asarray(targets, jnp.int32)
  negatives = jnp.asarray(negatives, jnp.int32)
  negative_scores = jnp.take_along_axis(scores, negatives, axis=-1)  # [B, S]
  competing = (negatives != targets[:, None]) & (negatives != PAD_ID)
  above = _not_below(negative_scores, _target_scores(scores, targets))
  return (1 + jnp.sum(above & competing, axis=-1)).astype(jnp.int32)


def rank_metrics(ranks, ks=DEFAULT_KS):
  """Per-example Hit@K, NDCG@K and MRR@K from 1-based ranks.

  With a single target: Hit@K = [rank <= K] (= Recall@K),
  NDCG@K = 1 / log2(rank + 1) if rank <= K else 0,
  MRR@K = 1 / rank if rank <= K else 0.

  Args:
    ranks: int [B] 1-based ranks.
    ks: iterable of cut-offs K.

  Returns:
    Dict `{"hit@K": [B], "ndcg@K": [B], "mrr@K": [B]}` for every K in `ks`,
    float32 values.
  """
  ranks = jnp.asarray(ranks, jnp.float32)
  ndcg = 1.0 / jnp.log2(ranks + 1.0)
  reciprocal = 1.0 / ranks
  metrics = {}
  for k in ks:
    hit = ranks <= k
    metrics[f'hit@{k}'] = hit.astype(jnp.float32)
    metrics[f'ndcg@{k}'] = jnp.where(hit, ndcg, 0.0)
    metrics[f'mrr@{k}'] = jnp.where(hit, reciprocal, 0.0)
  return metrics


def history_excluded_metrics(scores, targets, history, ks=DEFAULT_KS):
  """Per-example metrics with the history out of the ranking, and seen@10.

  Args:
    scores: float [B, V] scores of all items.
    targets: int [B] target item ids.
    history: int [B, M] the items each user has already, `PAD_ID`-padded.
    ks: cut-offs.

  Returns:
    `rank_metrics` of the ranks with `history` excluded, each name suffixed
    with `HISTORY_EXCLUDED`, plus `SEEN_AT_10`: how many of the 10 best
    items of the ranking that keeps the history are already in it.
  """
  seen = item_mask(jnp.shape(scores)[1], history)
  excluded = rank_metrics(_ranks(scores, targets, seen), ks)
  result = {name + HISTORY_EXCLUDED: value for name, value in excluded.items()}
  result[SEEN_AT_10] = seen_in_top(scores, seen, 10)
  return result


def seen_input_in_top(scores, inputs, k=10):
  """Float [B]: how many of the `k` best real items are in each row's input.

  Args:
    scores: float [B, V] scores of all items.
    inputs: int [B, L] the model's input ids, `PAD_ID`-padded; ids >= V
      (a cloze mask token) are not items and never count.
    k: the cut-off.
  """
  inputs = jnp.asarray(inputs, jnp.int32)
  items = jnp.where(inputs < jnp.shape(scores)[1], inputs, PAD_ID)
  return seen_in_top(scores, item_mask(jnp.shape(scores)[1], items), k)


def summarize(per_example, valid):
  """Sums per-example metrics over the valid rows of a batch.

  Args:
    per_example: dict of float [B] values (e.g. from `rank_metrics`).
    valid: bool [B], False on rows that only pad the batch. Values there are
      ignored, even NaN.

  Returns:
    `(sums, count)`: dict of float32 scalar sums with the keys of
    `per_example`, and the int32 number of valid rows. Add both over batches
    and divide once: `mean[k] = total_sums[k] / total_count`.
  """
  valid = jnp.asarray(valid, bool)
  sums = {
      name: jnp.sum(jnp.where(valid, jnp.asarray(value, jnp.float32), 0.0))
      for name, value in per_example.items()
  }
  return sums, jnp.sum(valid, dtype=jnp.int32)
