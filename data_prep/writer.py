"""Atomic writing of a prepared dataset directory.

Everything is written into a temporary directory beside the output and renamed
into place at the end, so a failed or interrupted run never leaves a
half-written output: readers see either the old directory or the new one.
"""

import json
import os
import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np

from linrec_jax import data

_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"
_DIRECTORY_MODE = 0o755


def write_prepared(
    output_dir: str | pathlib.Path,
    *,
    items: np.ndarray,
    offsets: np.ndarray,
    user_ids: list[bytes],
    item_ids: list[bytes],
    meta: dict[str, Any],
    overwrite: bool = False,
) -> pathlib.Path:
  """Writes sequences.npz, the id files and meta.json, atomically.

  Args:
    output_dir: the directory to create (or replace, with overwrite).
    items: int32 [num_interactions].
    offsets: int64 [num_users + 1].
    user_ids: original id of internal user i + 1 at index i.
    item_ids: original id of internal item i + 1 at index i.
    meta: the metadata (JSON-serialisable).
    overwrite: replace an existing prepared dataset. An existing directory
      that is not empty and holds no meta.json is never replaced.

  Returns:
    output_dir as an absolute Path.
  """
  output_dir = pathlib.Path(output_dir).absolute()
  _check_replaceable(output_dir, overwrite)
  output_dir.parent.mkdir(parents=True, exist_ok=True)
  tmp = _temporary_directory(_TMP_PREFIX, output_dir)
  try:
    os.chmod(tmp, _DIRECTORY_MODE)  # mkdtemp makes it private (0o700).
    with open(tmp / data.SEQUENCES_FILE, "wb") as f:
      np.savez(
          f, items=items.astype(np.int32), offsets=offsets.astype(np.int64)
      )
      _sync(f)
    _write_lines(tmp / data.USER_IDS_FILE, user_ids)
    _write_lines(tmp / data.ITEM_IDS_FILE, item_ids)
    with open(tmp / data.META_FILE, "w", encoding="utf-8") as f:
      json.dump(meta, f, indent=2)
      f.write("\n")
      _sync(f)
    _replace(tmp, output_dir, overwrite)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return output_dir


def _check_replaceable(output_dir: pathlib.Path, overwrite: bool) -> None:
  if not output_dir.exists():
    return
  if not output_dir.is_dir():
    raise FileExistsError(f"{output_dir} exists and is not a directory")
  if not any(output_dir.iterdir()):
    return
  if not (output_dir / data.META_FILE).is_file():
    raise FileExistsError(
        f"{output_dir} exists, is not empty and is not a prepared dataset; "
        "refusing to replace it"
    )
  if not overwrite:
    raise FileExistsError(
        f"{output_dir} already holds a prepared dataset; pass --overwrite "
        "to replace it"
    )


def _write_lines(path: pathlib.Path, lines: list[bytes]) -> None:
  with open(path, "wb") as f:
    f.write(b"".join(line + b"\n" for line in lines))
    _sync(f)


def _sync(f) -> None:
  f.flush()
  os.fsync(f.fileno())


def _replace(tmp: pathlib.Path, output_dir: pathlib.Path, overwrite: bool):
  """Renames tmp to output_dir, moving an existing output aside first.

  Without overwrite, an output that another process wrote meanwhile is left
  alone: the rename fails and FileExistsError says so.
  """
  if not overwrite:
    try:
      os.rename(tmp, output_dir)  # Replaces at most an empty directory.
    except OSError as e:
      if not output_dir.exists():
        raise
      raise FileExistsError(f"{output_dir} appeared while writing") from e
    _sync_directory(output_dir.parent)
    return
  old = None
  if output_dir.exists():
    old = _temporary_directory(_OLD_PREFIX, output_dir)
    os.rename(output_dir, old / output_dir.name)
  try:
    os.rename(tmp, output_dir)
  except BaseException:
    if old is not None:
      os.rename(old / output_dir.name, output_dir)
      shutil.rmtree(old, ignore_errors=True)
    raise
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)
  _sync_directory(output_dir.parent)


def _temporary_directory(prefix: str, beside: pathlib.Path) -> pathlib.Path:
  """A new hidden directory next to `beside` (same file system: renames)."""
  name = tempfile.mkdtemp(prefix=prefix + beside.name, dir=beside.parent)
  return pathlib.Path(name)


def _sync_directory(path: pathlib.Path) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
