"""Ordering, filtering and id remapping of interactions (all vectorised).

The functions work on dense integer codes (see `encode`) so that counting is a
`np.bincount`. Sequences are kept grouped by user, in time order within a user.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class FilterCounts:
  """What the filters removed, for meta.json."""

  dropped_consecutive_repeats: int = 0
  dropped_interactions_k_core: int = 0
  dropped_users_k_core: int = 0
  dropped_users_short: int = 0


def encode(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Dense codes for arbitrary ids.

  Args:
    values: ids [N] (integers or bytes).

  Returns:
    codes int64 [N] in 0..M-1 and the sorted distinct ids [M], so that
    `uniques[codes] == values`. Codes follow the sorted order of the ids
    (numeric for integers), so ids that are already 1..M keep their order.
  """
  uniques, codes = np.unique(values, return_inverse=True)
  return codes.astype(np.int64).reshape(-1), uniques


def chronological_order(
    users: np.ndarray, timestamps: np.ndarray | None
) -> np.ndarray:
  """The permutation that groups by user and sorts each user's history.

  Both sorts are stable: ties in time (and files without timestamps) keep the
  file order, which is how SASRec built its ml-1m.txt.

  Args:
    users: user codes [N].
    timestamps: float64 [N], or None to keep the file order within a user.

  Returns:
    int64 [N] indices, by user code, then timestamp, then file position.
  """
  if timestamps is None:
    return np.argsort(users, kind="stable")
  by_time = np.argsort(timestamps, kind="stable")
  return by_time[np.argsort(users[by_time], kind="stable")]


def filter_sequences(
    users: np.ndarray,
    items: np.ndarray,
    *,
    k_core: int,
    dedup_consecutive: bool,
    min_length: int,
) -> tuple[np.ndarray, np.ndarray, FilterCounts]:
  """Applies the filters until none of them removes anything more.

  The filters interact (dropping an item can create a repeat or push a user
  below k), so they run in a loop until a fixed point:
    1. optionally drop an item equal to the user's previous item;
    2. iterative k-core: drop users and items with fewer than k interactions;
    3. drop users with fewer than `min_length` interactions (leave-one-out
       needs a training, a validation and a test item).

  Args:
    users: user codes [N], grouped by user (see `chronological_order`).
    items: item codes [N], in time order within each user.
    k_core: the minimum count of users and items; 0 or 1 disables it.
    dedup_consecutive: whether to drop repeated consecutive items.
    min_length: the minimum number of interactions a user keeps.

  Returns:
    The remaining users and items (same order) and what was dropped.
  """
  counts = FilterCounts()
  while True:
    size = len(users)
    if dedup_consecutive:
      repeat = np.zeros(len(users), dtype=bool)
      repeat[1:] = (users[1:] == users[:-1]) & (items[1:] == items[:-1])
      counts.dropped_consecutive_repeats += int(repeat.sum())
      users, items = users[~repeat], items[~repeat]
    if k_core > 1:
      kept = _k_core(users, items, k_core)
      counts.dropped_interactions_k_core += int(len(users) - kept.sum())
      counts.dropped_users_k_core += _num_distinct(users) - _num_distinct(
          users[kept]
      )
      users, items = users[kept], items[kept]
    short = np.bincount(users)[users] < min_length
    counts.dropped_users_short += _num_distinct(users[short])
    users, items = users[~short], items[~short]
    if len(users) == size:
      return users, items, counts


def _k_core(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
  """Boolean mask [N] of the interactions in the k-core."""
  kept = np.ones(len(users), dtype=bool)
  while True:
    user_count = np.bincount(users, weights=kept)[users]
    item_count = np.bincount(items, weights=kept)[items]
    now = kept & (user_count >= k) & (item_count >= k)
    if (now == kept).all():
      return kept
    kept = now


def _num_distinct(codes: np.ndarray) -> int:
  return int(np.unique(codes).size)


def remap(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Consecutive ids 1..n for the codes still in use (0 stays padding).

  Args:
    codes: int64 codes [N].

  Returns:
    ids int32 [N] in 1..n and the code of each id [n] (id i+1 -> entry i),
    in increasing code order.
  """
  used, inverse = np.unique(codes, return_inverse=True)
  return (inverse.reshape(-1) + 1).astype(np.int32), used


def offsets_of(user_ids: np.ndarray, num_users: int) -> np.ndarray:
  """Offsets int64 [num_users + 1] of user-grouped ids 1..num_users."""
  lengths = np.bincount(user_ids, minlength=num_users + 1)[1:]
  return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
