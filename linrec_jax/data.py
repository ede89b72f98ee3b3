"""Prepared sequences: loading, the leave-one-out split, preparing on demand.

The prepared-data format (docs/ARCHITECTURE.md) is a directory with
`sequences.npz` (`items` int32 [num_interactions], every user's items in time
order, concatenated; `offsets` int64 [num_users + 1]), `meta.json`,
`user_ids.txt` and `item_ids.txt` (line i holds the original id of internal id
i + 1). `data_prep/` writes it; this module reads it. Internal user ids are
1..num_users: user u owns `items[offsets[u - 1]:offsets[u]]`.

Leave-one-out: a user's last item is the test target, the second-to-last the
validation target, everything before it the training part. Batches are built
in `linrec_jax.batches`. Pure NumPy; no JAX needed.
"""

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np

from linrec_jax.constants import PAD_ID

FORMAT_VERSION = 1
SEQUENCES_FILE = "sequences.npz"
META_FILE = "meta.json"
USER_IDS_FILE = "user_ids.txt"
ITEM_IDS_FILE = "item_ids.txt"
REQUIRED_FILES = (SEQUENCES_FILE, META_FILE, USER_IDS_FILE, ITEM_IDS_FILE)
# Leave-one-out needs a training item, a validation item and a test item.
MIN_INTERACTIONS = 3
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
  """

  items: np.ndarray
  offsets: np.ndarray
  num_items: int
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)

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
  """Loads a prepared dataset.

  Args:
    directory: a directory written by `data_prep.prepare`.

  Returns:
    The sequences, checked against meta.json.

  Raises:
    FileNotFoundError: the directory or one of its files is missing.
    ValueError: unknown format_version or inconsistent contents.
  """
  directory = pathlib.Path(directory)
  missing = [f for f in REQUIRED_FILES if not (directory / f).is_file()]
  if missing:
    raise FileNotFoundError(
        f"{directory} is not a prepared dataset: missing {', '.join(missing)};"
        " run `python -m data_prep.prepare --output_dir=...` first"
    )
  meta = json.loads((directory / META_FILE).read_text())
  version = meta.get("format_version")
  if version != FORMAT_VERSION:
    raise ValueError(
        f"{directory / META_FILE}: unknown format_version {version!r}; this "
        f"code reads version {FORMAT_VERSION}: prepare the data again"
    )
  with np.load(directory / SEQUENCES_FILE, allow_pickle=False) as npz:
    items, offsets = npz["items"], npz["offsets"]
  seqs = Sequences(items, offsets, int(meta["num_items"]), meta)
  _check(seqs, directory)
  items.setflags(write=False)
  offsets.setflags(write=False)
  return seqs


def _check(seqs: Sequences, directory: pathlib.Path) -> None:
  """Checks dtypes, shapes and ranges against the format and meta.json."""

  def fail(what):
    raise ValueError(f"{directory / SEQUENCES_FILE}: {what}")

  items, offsets, meta = seqs.items, seqs.offsets, seqs.meta
  if items.dtype != np.int32 or offsets.dtype != np.int64:
    fail(f"dtypes {items.dtype}/{offsets.dtype}, expected int32/int64")
  if items.ndim != 1 or offsets.ndim != 1 or len(offsets) < 2:
    fail("items and offsets must be non-empty 1-D arrays")
  if offsets[0] != 0 or offsets[-1] != len(items):
    fail("offsets must run from 0 to len(items)")
  if seqs.num_users != meta["num_users"] or len(items) != meta[
      "num_interactions"
  ]:
    fail("array sizes disagree with meta.json")
  if (np.diff(offsets) < MIN_INTERACTIONS).any():
    fail(f"a user has fewer than {MIN_INTERACTIONS} interactions")
  if items.min() <= PAD_ID or items.max() > seqs.num_items:
    fail(f"item ids outside 1..{seqs.num_items}")


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


def prepare_if_needed(
    dataset: str,
    input_path: str | pathlib.Path | list | None,
    output_dir: str | pathlib.Path,
    **options,
) -> pathlib.Path:
  """Prepares a dataset into output_dir unless it is already prepared there.

  For the training job: the first run prepares, later runs (and resumed runs)
  reuse the directory. An existing directory prepared from another dataset or
  with other options is an error rather than silently used or replaced.

  Args:
    dataset: the dataset name, e.g. "ml-1m" (selects the presets).
    input_path: the raw file(s); None downloads where supported (ml-1m).
    output_dir: where the prepared dataset lives.
    **options: overrides of the preset, as for
      `data_prep.prepare.prepare_dataset`.

  Returns:
    output_dir as a Path.
  """
  # Imported here: data_prep depends on this module for the format constants.
  from data_prep import prepare  # pylint: disable=import-outside-toplevel

  output_dir = pathlib.Path(output_dir)
  meta_path = output_dir / META_FILE
  if meta_path.is_file():
    meta = json.loads(meta_path.read_text())
    wanted = prepare.resolve_options(dataset, **options)
    found = tuple(meta.get(k) for k in ("dataset", "options", "format_version"))
    if found == (dataset, wanted, FORMAT_VERSION):
      return output_dir
    raise ValueError(
        f"{output_dir} holds a dataset prepared differently "
        f"(dataset={found[0]!r}, options={found[1]}, format_version="
        f"{found[2]}); wanted dataset={dataset!r}, options={wanted}, "
        f"format_version={FORMAT_VERSION}: choose another directory or "
        "delete it"
    )
  return prepare.prepare_dataset(dataset, input_path, output_dir, **options)
