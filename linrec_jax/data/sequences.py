"""Prepared sequences: loading and the leave-one-out split.

The prepared-data format (docs/ARCHITECTURE.md) is a directory with
`sequences.npz` (`items` int32 [num_interactions], every user's items in time
order, concatenated; `offsets` int64 [num_users + 1]), `meta.json`,
`user_ids.txt` and `item_ids.txt` (line i holds the original id of internal id
i + 1). `data_prep/` writes it; this module reads it, verified against the
checksums and counts of meta.json (`data.prepared`; errors are one-line
`PreparedDataError`s naming the file). Internal user ids are 1..num_users:
user u owns `items[offsets[u - 1]:offsets[u]]`.

Leave-one-out: a user's last item is the test target, the second-to-last the
validation target, everything before it the training part. Pure NumPy.
"""

import dataclasses
import pathlib
from typing import Any

import numpy as np

from linrec_jax.constants import PAD_ID
from linrec_jax.data import prepared as prepared_data

VALID, TEST = "valid", "test"
# Items held out at the end of each sequence by each stage's target.
_HELD_OUT = {VALID: 2, TEST: 1}


@dataclasses.dataclass(frozen=True, eq=False)
class Sequences:
  """Every user's time-ordered items, concatenated (read-only arrays).

  Attributes:
    items: int32 [num_interactions], ids in 1..num_items.
    offsets: int64 [num_users + 1]; row r (user id r + 1) owns
      `items[offsets[r]:offsets[r + 1]]`.
    num_items: the number of distinct items (ids 1..num_items).
    meta: the contents of meta.json.
    fingerprint: `data.prepared.fingerprint` of the directory loaded (None
      for sequences built in memory).
  """

  items: np.ndarray
  offsets: np.ndarray
  num_items: int
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)
  fingerprint: str | None = None

  @property
  def num_users(self) -> int:
    return len(self.offsets) - 1

  @property
  def lengths(self) -> np.ndarray:
    """int64 [num_users]: the number of interactions of every user."""
    return np.diff(self.offsets)

  def user_items(self, row: int) -> np.ndarray:
    """The items of row `row` (user id row + 1), oldest first."""
    return self.items[self.offsets[row] : self.offsets[row + 1]]


def load(directory: str | pathlib.Path) -> Sequences:
  """Loads a prepared dataset, verified (`data.prepared.read_verified`).

  Args:
    directory: a directory written by `data_prep.prepare`.

  Returns:
    The sequences, their files checked against the checksums of meta.json
    and their arrays against its counts; `fingerprint` identifies them.

  Raises:
    MissingPreparedDataError (a FileNotFoundError and a PreparedDataError):
      the directory or one of its files is missing.
    PreparedDataError (a ValueError): damaged, inconsistent or prepared by
      an older version; the one-line message names the file.
  """
  verified = prepared_data.read_verified(directory)
  verified.items.setflags(write=False)
  verified.offsets.setflags(write=False)
  return Sequences(
      verified.items,
      verified.offsets,
      verified.meta["num_items"],
      verified.meta,
      verified.fingerprint,
  )


@dataclasses.dataclass(frozen=True)
class LeaveOneOut:
  """Where each user's parts lie in `Sequences.items` (int64 [num_users]).

  Attributes:
    train_start: index of the user's first item.
    train_end: one past the last training item (the validation item's index).
    valid_items: the validation target of each user.
    test_items: the test target of each user.
  """

  train_start: np.ndarray
  train_end: np.ndarray
  valid_items: np.ndarray
  test_items: np.ndarray


def leave_one_out(seqs: Sequences) -> LeaveOneOut:
  """Splits every sequence: last item test, second-to-last validation."""
  ends = seqs.offsets[1:]
  return LeaveOneOut(
      train_start=seqs.offsets[:-1],
      train_end=ends - _HELD_OUT[VALID],
      valid_items=seqs.items[ends - _HELD_OUT[VALID]],
      test_items=seqs.items[ends - _HELD_OUT[TEST]],
  )


def history_end(seqs: Sequences, stage: str) -> np.ndarray:
  """int64 [num_users]: index of each user's target for `stage`.

  The items before it (from `offsets[:-1]`) are what the model may see:
  the training part for 'valid', the training part plus the validation item
  for 'test'.
  """
  if stage not in _HELD_OUT:
    raise ValueError(f"stage must be {VALID!r} or {TEST!r}, got {stage!r}")
  return seqs.offsets[1:] - _HELD_OUT[stage]
