"""The errors a user can cause, turned into one line and a non-zero exit.

Entry points wrap their work in `user_errors()`: a bad flag, unreadable or
inconsistent data, a busy, read-only or full workdir, a run that diverged
or cannot fit in memory all end as `error: <one line>` on stderr with exit
status 1, never as a traceback. Programming errors (anything else) still
show their traceback.
"""

import contextlib
import sys
import zipfile
import zlib
from typing import Iterator

from absl import logging

from linrec_jax.training import workdir_lock

MAX_CHARS = 600


def user_error_types() -> tuple[type, ...]:
  """The exception types a user can cause.

  `train.NonFiniteError` counts only once `linrec_jax.training.train` is imported (it
  cannot be raised before), so a bad flag is reported without starting JAX.
  """
  types = (
      ValueError,
      OSError,
      EOFError,
      zipfile.BadZipFile,
      zlib.error,
      workdir_lock.WorkdirBusyError,
  )
  train = sys.modules.get("linrec_jax.training.train")
  return types + ((train.NonFiniteError,) if train is not None else ())


def one_line(error: BaseException) -> str:
  """`error: ...`: the message's first line, at most MAX_CHARS long."""
  lines = str(error).strip().splitlines() or [type(error).__name__]
  text = lines[0]
  if (
      isinstance(error, OSError)
      and error.filename
      and (str(error.filename) not in text)
  ):
    text = f"{error.filename}: {text}"
  if len(text) > MAX_CHARS:
    text = text[: MAX_CHARS - 3] + "..."
  return f"error: {text}"


def quiet_info_logs() -> None:
  """Keeps absl's INFO lines (JAX's backend probing) off the console."""
  logging.set_verbosity(logging.WARNING)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
  """Exits with one line on stderr when the body raises a user error."""
  try:
    yield
  except Exception as error:  # pylint: disable=broad-except
    if not isinstance(error, user_error_types()):
      raise
    sys.exit(one_line(error))


def require_path(flag: str, value: str | None) -> None:
  """Exits with one line when a path flag is unset or blank."""
  if value is None or not value.strip():
    sys.exit(f"error: --{flag} is empty; give a directory")
