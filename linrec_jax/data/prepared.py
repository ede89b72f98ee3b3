"""The prepared-data directory: its files, their checksums, their verification.

A prepared directory holds `sequences.npz`, `user_ids.txt`, `item_ids.txt`
and `meta.json`; meta.json's `files` entry records the size and sha256 of the
other three (`file_records`), so the bytes of meta.json identify the whole
dataset (`fingerprint`). `read_verified` reads every file once, checks its
checksum and then checks the arrays and the id files against the counts of
meta.json. Every problem is a `PreparedDataError` (a ValueError) whose
one-line message names the file at fault.

Directories prepared before the checksums were recorded (meta.json without
`files`) are refused with a message asking to prepare them again;
`data_prep.prepare.prepare_if_needed` does that by itself.
"""

import dataclasses
import hashlib
import io
import json
import pathlib
import zipfile
from typing import Any

import numpy as np

from linrec_jax.constants import PAD_ID

FORMAT_VERSION = 1
SEQUENCES_FILE = "sequences.npz"
META_FILE = "meta.json"
USER_IDS_FILE = "user_ids.txt"
ITEM_IDS_FILE = "item_ids.txt"
REQUIRED_FILES = (SEQUENCES_FILE, META_FILE, USER_IDS_FILE, ITEM_IDS_FILE)
# The files whose size and sha256 meta.json records.
CHECKED_FILES = (SEQUENCES_FILE, USER_IDS_FILE, ITEM_IDS_FILE)
# meta.json's key for the records of CHECKED_FILES.
FILES_KEY = "files"
# Leave-one-out needs a training item, a validation item and a test item.
MIN_INTERACTIONS = 3
_ARRAYS = ("items", "offsets")
_SHA256_HEX_DIGITS = 64


class PreparedDataError(ValueError):
  """A prepared directory that is incomplete, damaged or inconsistent.

  The message is one complete line naming the file at fault; `path` holds it.
  """

  def __init__(self, path: str | pathlib.Path, message: str):
    self.path = str(path)
    super().__init__(f"{self.path}: {message}")


class MissingPreparedDataError(PreparedDataError, FileNotFoundError):
  """A prepared directory, or one of its files, does not exist."""


@dataclasses.dataclass(frozen=True, eq=False)
class Verified:
  """The verified contents of a prepared directory.

  Attributes:
    items: int32 [num_interactions], ids in 1..num_items.
    offsets: int64 [num_users + 1], from 0 to num_interactions.
    meta: the contents of meta.json.
    fingerprint: the sha256 hex digest of meta.json's bytes.
  """

  items: np.ndarray
  offsets: np.ndarray
  meta: dict[str, Any]
  fingerprint: str


def _re_prepare_hint(directory: pathlib.Path) -> str:
  return (
      "prepare it again (python -m data_prep.prepare --overwrite "
      f"--output_dir={directory} ...) or delete it"
  )


def file_records(directory: str | pathlib.Path) -> dict[str, dict[str, Any]]:
  """The meta.json `files` entry: {name: {size_bytes, sha256}} of CHECKED_FILES.

  Args:
    directory: a directory holding the CHECKED_FILES (being written).
  """
  directory = pathlib.Path(directory)
  records = {}
  for name in CHECKED_FILES:
    raw = (directory / name).read_bytes()
    records[name] = {
        "size_bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
  return records


def read_meta(directory: str | pathlib.Path) -> tuple[dict[str, Any], bytes]:
  """meta.json of a prepared directory: (contents, raw bytes).

  Raises:
    MissingPreparedDataError: no meta.json.
    PreparedDataError: meta.json is not a JSON object.
  """
  path = pathlib.Path(directory) / META_FILE
  try:
    raw = path.read_bytes()
  except FileNotFoundError as e:
    raise MissingPreparedDataError(path, "not found") from e
  try:
    meta = json.loads(raw.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise PreparedDataError(path, f"not valid JSON ({e})") from e
  if not isinstance(meta, dict):
    raise PreparedDataError(path, "not a JSON object")
  return meta, raw


def has_checksums(meta: dict[str, Any]) -> bool:
  """Whether meta.json records the checksums of the prepared files."""
  return FILES_KEY in meta


def read_verified(directory: str | pathlib.Path) -> Verified:
  """Reads a prepared directory, verifying checksums, arrays and id files.

  Every file is read once; the checks run on the bytes read, so what is
  verified is what is returned.

  Args:
    directory: a directory written by `data_prep.prepare`.

  Returns:
    The verified arrays (writable; the caller may freeze them), meta.json and
    the fingerprint.

  Raises:
    MissingPreparedDataError: the directory or one of its files is missing.
    PreparedDataError: anything else wrong, naming the file.
  """
  directory = pathlib.Path(directory)
  missing = [f for f in REQUIRED_FILES if not (directory / f).is_file()]
  if missing:
    raise MissingPreparedDataError(
        directory,
        f"not a prepared dataset: missing {', '.join(missing)}; run `python "
        "-m data_prep.prepare --output_dir=...` first",
    )
  meta, raw_meta = read_meta(directory)
  meta_path = directory / META_FILE
  version = meta.get("format_version")
  if version != FORMAT_VERSION:
    raise PreparedDataError(
        meta_path,
        f"unknown format_version {version!r}; this code reads version "
        f"{FORMAT_VERSION}: {_re_prepare_hint(directory)}",
    )
  if not has_checksums(meta):
    raise PreparedDataError(
        meta_path,
        "records no checksums of the prepared files (prepared by an older "
        f"version): {_re_prepare_hint(directory)}",
    )
  contents = {
      name: _read_checked(directory, name, meta) for name in CHECKED_FILES
  }
  counts = {
      key: _count(meta, key, meta_path)
      for key in ("num_users", "num_items", "num_interactions")
  }
  items, offsets = _read_arrays(
      directory / SEQUENCES_FILE, contents[SEQUENCES_FILE]
  )
  _check_arrays(items, offsets, counts, meta, directory)
  _check_ids(
      directory / USER_IDS_FILE,
      contents[USER_IDS_FILE],
      counts["num_users"],
      "num_users",
  )
  _check_ids(
      directory / ITEM_IDS_FILE,
      contents[ITEM_IDS_FILE],
      counts["num_items"],
      "num_items",
  )
  return Verified(items, offsets, meta, hashlib.sha256(raw_meta).hexdigest())


def fingerprint(directory: str | pathlib.Path) -> str:
  """Identifies a prepared dataset: the sha256 hex digest of its meta.json.

  meta.json records the sha256 of every other prepared file, so two
  directories with the same fingerprint hold the same data. The directory
  is verified first (`read_verified`), so a damaged one has no fingerprint.

  Raises:
    PreparedDataError: as `read_verified`.
  """
  return read_verified(directory).fingerprint


def _read_checked(directory: pathlib.Path, name: str, meta) -> bytes:
  meta_path = directory / META_FILE
  records = meta[FILES_KEY]
  record = records.get(name) if isinstance(records, dict) else None
  if not (
      isinstance(record, dict)
      and _is_count(record.get("size_bytes"))
      and isinstance(record.get("sha256"), str)
      and len(record["sha256"]) == _SHA256_HEX_DIGITS
  ):
    raise PreparedDataError(
        meta_path, f"{FILES_KEY} has no valid size_bytes/sha256 for {name}"
    )
  path = directory / name
  raw = path.read_bytes()
  if len(raw) != record["size_bytes"]:
    raise PreparedDataError(
        path,
        f"{len(raw)} bytes, but meta.json records {record['size_bytes']}: "
        f"the file was truncated or replaced; {_re_prepare_hint(directory)}",
    )
  if hashlib.sha256(raw).hexdigest() != record["sha256"]:
    raise PreparedDataError(
        path,
        "sha256 differs from the one meta.json records: the file was changed "
        f"or damaged after preparation; {_re_prepare_hint(directory)}",
    )
  return raw


def _is_count(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(meta, key: str, meta_path: pathlib.Path) -> int:
  value = meta.get(key)
  if not _is_count(value):
    raise PreparedDataError(meta_path, f"{key} is {value!r}, not a count")
  return value


def _read_arrays(path: pathlib.Path, raw: bytes):
  try:
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
      names = sorted(npz.files)
      if names != sorted(_ARRAYS):
        raise PreparedDataError(
            path, f"holds arrays {names}, expected {list(_ARRAYS)}"
        )
      return npz["items"], npz["offsets"]
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    if isinstance(e, PreparedDataError):
      raise
    raise PreparedDataError(path, f"not a readable npz archive ({e})") from e


def _check_arrays(items, offsets, counts, meta, directory) -> None:
  """Checks dtypes, shapes, offsets and ids against the format and meta.json."""
  path = directory / SEQUENCES_FILE

  def fail(what):
    raise PreparedDataError(path, what)

  if items.dtype != np.int32 or offsets.dtype != np.int64:
    fail(f"dtypes {items.dtype}/{offsets.dtype}, expected int32/int64")
  if items.ndim != 1 or offsets.ndim != 1 or len(offsets) < 2:
    fail("items and offsets must be non-empty 1-D arrays")
  if offsets[0] != 0 or offsets[-1] != len(items):
    fail(f"offsets must run from 0 to len(items) = {len(items)}")
  lengths = np.diff(offsets)
  if (lengths < 0).any():
    fail(f"offsets decrease at row {int(np.argmax(lengths < 0)) + 1}")
  if len(lengths) != counts["num_users"]:
    fail(
        f"array sizes disagree with meta.json: {len(lengths)} users, "
        f"num_users is {counts['num_users']}"
    )
  if len(items) != counts["num_interactions"]:
    fail(
        f"array sizes disagree with meta.json: {len(items)} interactions, "
        f"num_interactions is {counts['num_interactions']}"
    )
  if (lengths < MIN_INTERACTIONS).any():
    fail(
        f"user {int(np.argmax(lengths < MIN_INTERACTIONS)) + 1} has fewer "
        f"than {MIN_INTERACTIONS} interactions"
    )
  if items.min() <= PAD_ID or items.max() > counts["num_items"]:
    fail(
        f"item ids span {int(items.min())}..{int(items.max())}, outside "
        f"1..{counts['num_items']} (meta.json num_items)"
    )
  stats = meta.get("length_stats")
  if isinstance(stats, dict) and (
      stats.get("min") != int(lengths.min())
      or stats.get("max") != int(lengths.max())
  ):
    fail(
        f"lengths span {int(lengths.min())}..{int(lengths.max())}, but "
        f"meta.json length_stats say {stats.get('min')}..{stats.get('max')}"
    )


def _check_ids(path: pathlib.Path, raw: bytes, expected: int, key: str):
  """An id file holds `expected` distinct non-empty lines, each ending in \\n."""
  if raw and not raw.endswith(b"\n"):
    raise PreparedDataError(path, "the last line has no line end: truncated")
  lines = raw.split(b"\n")[:-1] if raw else []
  if len(lines) != expected:
    raise PreparedDataError(
        path, f"{len(lines)} ids, but meta.json {key} is {expected}"
    )
  if not all(lines):
    raise PreparedDataError(
        path, f"line {lines.index(b'') + 1} is empty, expected an id"
    )
  if len(set(lines)) != len(lines):
    seen = set()
    for line_no, line in enumerate(lines, 1):
      if line in seen:
        raise PreparedDataError(
            path, f"line {line_no} repeats the id {line[:80]!r}"
        )
      seen.add(line)
