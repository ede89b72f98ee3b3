"""One training process per workdir, with an OS lock on `workdir/train.lock`.

`fcntl.flock` locks belong to the open file: the kernel drops them when the
process ends in any way (SIGKILL included), so a crash cannot leave a stale
lock behind. The file itself stays; once its holder has written to the
workdir (`announce`), it names that process.
"""

import contextlib
import fcntl
import os
import time
from typing import Callable, Iterator

from linrec_jax import workdir as workdir_layout


class WorkdirBusyError(RuntimeError):
  """Another process is training in this workdir."""


class WorkdirNotWritableError(OSError):
  """The workdir cannot be created or written."""


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[Callable[[], None]]:
  """Holds the workdir's lock for the body; raises at once if it is taken.

  Yields:
    `announce()`, which writes this process's id into the lock file (call it
    when the run starts writing, so that a refused run changes nothing).

  Raises:
    WorkdirBusyError: another process holds the lock.
    WorkdirNotWritableError: the workdir or its lock file cannot be written.
  """
  path = os.path.join(workdir, workdir_layout.LOCK_FILE)
  try:
    os.makedirs(workdir, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as error:
    raise WorkdirNotWritableError(
        f"--workdir={workdir} is not writable ({path}: "
        f"{error.strerror or error})"
    ) from None
  try:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(handle, 200, 0).decode(errors="replace").strip()
      raise WorkdirBusyError(
          f"--workdir={workdir} is in use by another training "
          f"({holder or 'a running process'}; lock {path}); wait for it to "
          "end or use another --workdir"
      ) from None

    def announce():
      try:
        os.ftruncate(handle, 0)
        os.pwrite(
            handle,
            f"pid {os.getpid()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(),
            0,
        )
      except OSError as error:
        raise WorkdirNotWritableError(
            f"--workdir={workdir} is not writable ({path}: "
            f"{error.strerror or error})"
        ) from None

    yield announce
  finally:
    os.close(handle)
