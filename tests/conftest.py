"""Shared pytest fixtures: where the real datasets live.

The real datasets (MovieLens-1M, Gowalla) may not be redistributed, so they
are never copied into this repository. Tests find them through the environment
variable `LINREC_DATA_DIR`; without it they look in `../shared/data` relative
to the repository root (a relative `LINREC_DATA_DIR` is read relative to the
repository root too, as the Makefile sets it). When the data is absent, tests
that need it are skipped with the reason, except under `CI=true`, where a
missing dataset is a failure: CI must not pass by skipping everything.
"""

import os
import pathlib
import shutil
import tempfile

import pytest

# Tests compile hundreds of small programs and run each a few times, so
# LLVM's optimisation passes cost more than they save (1.6x on the model
# and step tests); the computation is the same. Set before JAX is imported,
# and inherited by the programs the tests start.
_FAST_COMPILE = "--xla_backend_optimization_level=0"
if _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + " " + _FAST_COMPILE
  ).strip()

# Many tests, and the training programs they start, compile the same small
# programs (the tiny preset's steps, the evaluation sums). One compilation
# cache for the whole session, inherited by the pytest-xdist workers and
# every subprocess, compiles each once; XLA keys an entry by the program,
# its flags and the backend, so a hit runs the same computation. A cache
# named by the caller is used as it is.
_SESSION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _SESSION_CACHE = tempfile.mkdtemp(prefix="linrec_jax_test_compilations_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def pytest_unconfigure(config):  # pylint: disable=unused-argument
  """Removes the session's compilation cache (in the process that made it)."""
  if _SESSION_CACHE:
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA_DIR_ENV = "LINREC_DATA_DIR"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def _in_ci() -> bool:
  return os.environ.get("CI", "").strip().lower() == "true"


def _missing(reason: str):
  """Skips the calling test, or fails it under CI=true."""
  if _in_ci():
    pytest.fail(f"{reason} (CI=true: real-data tests must not be skipped)")
  pytest.skip(reason)


def resolve_data_dir() -> pathlib.Path:
  """Returns the data directory named by LINREC_DATA_DIR or the default."""
  value = os.environ.get(DATA_DIR_ENV)
  if not value:
    return DEFAULT_DATA_DIR
  path = pathlib.Path(value).expanduser()
  return path if path.is_absolute() else REPO_ROOT / path


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
  """The directory holding the real datasets (see the module docstring)."""
  path = resolve_data_dir()
  if not path.is_dir():
    _missing(
        f"real datasets not found at {path}; set {DATA_DIR_ENV} to the "
        "shared/data directory (see shared/data/README.md)"
    )
  return path


@pytest.fixture(scope="session")
def data_file(data_dir):
  """Returns a function mapping a path inside data_dir to an existing file.

  Usage: `data_file("ml-1m/ml-1m.txt.gz")`. A missing file skips the test
  (fails it under CI=true) with a message naming the file.
  """

  def get(relative: str) -> pathlib.Path:
    path = data_dir / relative
    if not path.exists():
      _missing(f"dataset file {path} not found under {DATA_DIR_ENV}={data_dir}")
    return path

  return get


ML1M_FILE = "ml-1m/ml-1m.txt.gz"


@pytest.fixture(scope="session")
def ml1m_prepared(data_file, tmp_path_factory) -> pathlib.Path:
  """The real SASRec ML-1M, prepared once per session into a temp dir."""
  from data_prep import prepare  # pylint: disable=import-outside-toplevel

  output = tmp_path_factory.mktemp("prepared") / "ml-1m"
  return prepare.prepare_dataset("ml-1m", data_file(ML1M_FILE), output)
