"""Atomic writing and replacing of a prepared dataset directory.

Everything is written into a temporary directory beside the output, then
moved into place by renames, so that at every moment the output path holds
either the old complete dataset or the new one, never neither and never a
half-written one:

  1. write `.tmp-<name>.<host>.<pid>.<random>/` (files fsynced, meta.json
     last, recording the sha256 of every other file);
  2. a new output: rename it to `<name>`. A replaced output: swap it with
     `<name>` in one step (Linux `renameat2(RENAME_EXCHANGE)`), so the
     temporary name now holds the old dataset;
  3. rename the old dataset to `.trash-<name>...` and delete it.

Where the swap is not supported (other systems, some file systems), step 2
moves the old dataset to `.old-<name>...` first and then renames the new one
into place; a kill between the two renames leaves the old dataset under
`.old-`, and the next run puts it back (`clean_leftovers`).

`clean_leftovers` runs before every write (and `linrec_jax.data.
prepare_if_needed` runs it too): it deletes `.trash-` directories, restores
or deletes `.old-` ones, deletes `.tmp-` directories whose writer (same host)
is dead, and reports, without touching them, those it cannot prove dead.
"""

import ctypes
import errno
import json
import os
import pathlib
import re
import shutil
import socket
import tempfile
from typing import Any

from absl import logging
import numpy as np

from linrec_jax import data
from linrec_jax.data import prepared as prepared_data

_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"
_TRASH_PREFIX = ".trash-"
_DIRECTORY_MODE = 0o755
# renameat2(2): paths relative to the working directory; swap both paths.
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_EXCHANGE_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


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

  meta.json gets a `files` entry with the size and sha256 of the other files
  (`linrec_jax.data.prepared.file_records`).

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
  check_replaceable(output_dir, overwrite)
  try:
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(output_dir)
    tmp = _temporary_directory(_TMP_PREFIX, output_dir)
  except OSError as e:
    raise _cannot_write(output_dir, e) from e
  try:
    os.chmod(tmp, _DIRECTORY_MODE)  # mkdtemp makes it private (0o700).
    with open(tmp / data.SEQUENCES_FILE, "wb") as f:
      np.savez(
          f, items=items.astype(np.int32), offsets=offsets.astype(np.int64)
      )
      _sync(f)
    _write_lines(tmp / data.USER_IDS_FILE, user_ids)
    _write_lines(tmp / data.ITEM_IDS_FILE, item_ids)
    meta = {**meta, prepared_data.FILES_KEY: prepared_data.file_records(tmp)}
    with open(tmp / data.META_FILE, "w", encoding="utf-8") as f:
      json.dump(meta, f, indent=2)
      f.write("\n")
      _sync(f)
    _sync_directory(tmp)
  except BaseException as e:
    shutil.rmtree(tmp, ignore_errors=True)
    if isinstance(e, OSError):
      raise _cannot_write(output_dir, e) from e
    raise
  try:
    _replace(tmp, output_dir, overwrite)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return output_dir


def _cannot_write(output_dir: pathlib.Path, error: OSError) -> OSError:
  """The error, of the same class, its message naming the output first."""
  return type(error)(f"cannot write {output_dir}: {error}")


def clean_leftovers(output_dir: str | pathlib.Path) -> list[str]:
  """Cleans up what interrupted writes of output_dir left beside it.

  Args:
    output_dir: a prepared directory's path (need not exist).

  Returns:
    One line per leftover that was left in place (a `.tmp-` directory whose
    writer may still run: another host's, or a live process's); each is also
    logged as a warning.
  """
  output_dir = pathlib.Path(output_dir).absolute()
  if not output_dir.parent.is_dir():
    return []
  reports = []
  for path in sorted(output_dir.parent.iterdir()):
    kind = _leftover_kind(path.name, output_dir.name)
    if kind == _TRASH_PREFIX:
      shutil.rmtree(path, ignore_errors=True)
    elif kind == _OLD_PREFIX:
      if not output_dir.exists():
        os.rename(path, output_dir)
        _sync_directory(output_dir.parent)
        logging.warning(
            "restored %s from %s (a replace was interrupted)",
            output_dir,
            path.name,
        )
      else:
        shutil.rmtree(path, ignore_errors=True)
    elif kind == _TMP_PREFIX:
      if _writer_is_dead(path.name, output_dir.name):
        shutil.rmtree(path, ignore_errors=True)
      else:
        reports.append(
            f"{path}: an unfinished write of {output_dir.name}, left alone "
            "(its writer may still run); delete it if no write is running"
        )
        logging.warning("%s", reports[-1])
  return reports


def check_replaceable(output_dir: pathlib.Path, overwrite: bool) -> None:
  """Raises FileExistsError unless write_prepared may write output_dir."""
  output_dir = pathlib.Path(output_dir).absolute()
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
  """Moves the complete tmp directory to output_dir (module docstring).

  Without overwrite, an output that another process wrote meanwhile is left
  alone: the rename fails and FileExistsError says so.
  """
  try:
    os.rename(tmp, output_dir)  # Replaces at most an empty directory.
  except OSError as e:
    if not output_dir.exists():
      raise
    if not overwrite:
      raise FileExistsError(f"{output_dir} appeared while writing") from e
    if _exchange(tmp, output_dir):
      _sync_directory(output_dir.parent)
      _discard(tmp, output_dir)  # tmp now holds the old dataset.
    else:
      _replace_in_two_steps(tmp, output_dir)
    return
  _sync_directory(output_dir.parent)


def _replace_in_two_steps(tmp: pathlib.Path, output_dir: pathlib.Path):
  old = _unused_name(_OLD_PREFIX, output_dir)
  os.rename(output_dir, old)
  try:
    os.rename(tmp, output_dir)
  except BaseException:
    os.rename(old, output_dir)
    raise
  _sync_directory(output_dir.parent)
  _discard(old, output_dir)


def _discard(path: pathlib.Path, output_dir: pathlib.Path) -> None:
  """Deletes a replaced dataset: first renamed to .trash-, then removed, so
  an interrupted removal leaves only a name the next run deletes."""
  trash = _unused_name(_TRASH_PREFIX, output_dir)
  os.rename(path, trash)
  shutil.rmtree(trash, ignore_errors=True)


def _exchange(a: pathlib.Path, b: pathlib.Path) -> bool:
  """Swaps two existing paths atomically; False where unsupported.

  Python has no binding of Linux's renameat2, so it is called through ctypes.
  """
  function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
  if function is None:
    return False
  function.argtypes = [
      ctypes.c_int,
      ctypes.c_char_p,
      ctypes.c_int,
      ctypes.c_char_p,
      ctypes.c_uint,
  ]
  if (
      function(
          _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE
      )
      == 0
  ):
    return True
  code = ctypes.get_errno()
  if code in _EXCHANGE_UNSUPPORTED:
    return False
  raise OSError(code, os.strerror(code), str(b))


def _owner_tag() -> str:
  """`<host>.<pid>` of this process, for the names of temporary directories."""
  host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
  return f"{host}.{os.getpid()}"


def _temporary_directory(prefix: str, beside: pathlib.Path) -> pathlib.Path:
  """A new hidden directory next to `beside` (same file system: renames)."""
  name = tempfile.mkdtemp(
      prefix=f"{prefix}{beside.name}.{_owner_tag()}.", dir=beside.parent
  )
  return pathlib.Path(name)


def _unused_name(prefix: str, beside: pathlib.Path) -> pathlib.Path:
  """A free hidden name next to `beside`, for a directory renamed there."""
  probe = _temporary_directory(prefix, beside)
  probe.rmdir()
  return probe


def _leftover_kind(name: str, output_name: str) -> str | None:
  """The prefix of a leftover of output_name's writes, or None."""
  for prefix in (_TMP_PREFIX, _OLD_PREFIX, _TRASH_PREFIX):
    head = f"{prefix}{output_name}."
    if name.startswith(head) and len(name[len(head) :].split(".")) == 3:
      return prefix
  return None


def _writer_is_dead(name: str, output_name: str) -> bool:
  """Whether the process that made the .tmp- directory `name` has ended."""
  host, pid, _ = name[len(f"{_TMP_PREFIX}{output_name}.") :].split(".")
  if host != _owner_tag().split(".")[0] or not pid.isdigit():
    return False
  if int(pid) == os.getpid():
    return False
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return True
  except PermissionError:
    return False  # Alive, another user's.
  return False


def _sync_directory(path: pathlib.Path) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
