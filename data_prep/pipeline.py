"""From raw interactions to the prepared arrays and their metadata (no I/O).

Order of the steps: implicit feedback with an optional minimum rating; a
stable chronological sort per user; the filters of `filters.filter_sequences`
(repeats, k-core, users too short for leave-one-out); ids remapped to 1..n.
"""

import dataclasses
from typing import Any

import numpy as np

from data_prep import filters
from data_prep.readers import Interactions
from linrec_jax import data


@dataclasses.dataclass(frozen=True, eq=False)
class Prepared:
  """The arrays of a prepared dataset and what the steps removed.

  Attributes:
    items: int32 [num_interactions], ids 1..num_items, grouped by user.
    offsets: int64 [num_users + 1].
    user_ids: original id (bytes) of internal user i + 1 at index i.
    item_ids: original id (bytes) of internal item i + 1 at index i.
    counts: sizes before filtering and what each step dropped.
  """

  items: np.ndarray
  offsets: np.ndarray
  user_ids: list[bytes]
  item_ids: list[bytes]
  counts: dict[str, int]


def build(
    interactions: Interactions,
    *,
    min_rating: float | None,
    k_core: int,
    dedup_consecutive: bool,
) -> Prepared:
  """Runs the preparation steps on interactions in file order.

  Raises:
    ValueError: min_rating without ratings, or nothing left after filtering.
  """
  users, items = interactions.users, interactions.items
  times = interactions.timestamps
  counts = {"read_interactions": int(len(users))}
  if min_rating is not None:
    if interactions.ratings is None:
      raise ValueError(
          f"min_rating={min_rating} needs ratings, and the "
          f"{interactions.format} format has none"
      )
    keep = interactions.ratings >= min_rating
    counts["dropped_below_min_rating"] = int(len(users) - keep.sum())
    users, items = users[keep], items[keep]
    times = None if times is None else times[keep]
  user_codes, user_originals = filters.encode(users)
  item_codes, item_originals = filters.encode(items)
  counts["read_users"] = int(len(user_originals))
  counts["read_items"] = int(len(item_originals))
  order = filters.chronological_order(user_codes, times)
  user_codes, item_codes, dropped = filters.filter_sequences(
      user_codes[order],
      item_codes[order],
      k_core=k_core,
      dedup_consecutive=dedup_consecutive,
      min_length=data.MIN_INTERACTIONS,
  )
  counts.update(dataclasses.asdict(dropped))
  if not len(user_codes):
    raise ValueError(
        f"no user is left with {data.MIN_INTERACTIONS} or more interactions "
        f"after filtering: {counts}"
    )
  user_ids, kept_users = filters.remap(user_codes)
  item_ids, kept_items = filters.remap(item_codes)
  return Prepared(
      items=item_ids,
      offsets=filters.offsets_of(user_ids, len(kept_users)),
      user_ids=_as_lines(user_originals[kept_users]),
      item_ids=_as_lines(item_originals[kept_items]),
      counts=counts,
  )


def _as_lines(ids: np.ndarray) -> list[bytes]:
  if ids.dtype.kind == "S":
    return [bytes(i) for i in ids]
  return [str(i).encode() for i in ids.tolist()]


def metadata(
    prepared: Prepared,
    *,
    dataset: str,
    interactions: Interactions,
    options: dict[str, Any],
    training: dict[str, Any],
    downloaded_from: str | None = None,
) -> dict[str, Any]:
  """The meta.json contents of a prepared dataset.

  Args:
    prepared: the arrays.
    dataset: the dataset name.
    interactions: what was read (format and files).
    options: the preparation options used.
    training: the training settings the preset notes (max_len, batch_size).
    downloaded_from: the URL the input came from, if it was downloaded.
  """
  lengths = np.diff(prepared.offsets)
  return {
      "format_version": data.FORMAT_VERSION,
      "dataset": dataset,
      "num_users": int(len(lengths)),
      "num_items": int(len(prepared.item_ids)),
      "num_interactions": int(len(prepared.items)),
      "length_stats": {
          "mean": float(lengths.mean()),
          "median": float(np.median(lengths)),
          "min": int(lengths.min()),
          "max": int(lengths.max()),
      },
      "dropped_users_short": prepared.counts["dropped_users_short"],
      "filtering": prepared.counts,
      "options": options,
      "training": training,
      "source": {
          "format": interactions.format,
          "files": [dataclasses.asdict(f) for f in interactions.files],
          "downloaded_from": downloaded_from,
      },
  }
