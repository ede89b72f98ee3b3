"""Checks of the benchmark scripts' flags, each failure naming its flag.

The benchmarks call `check_*` first thing in `main`, inside
`failures.user_errors()`, so that a bad value ends as one line before any
work: sizes must be positive integers below 2**31, floats finite, lists
well formed, the output path writable, and a model's parameters must fit in
memory.
"""

import math
import os

from absl import flags

MAX_SIZE = 2**31 - 1
FLAGS = flags.FLAGS


def _fail(name: str, message: str):
  raise ValueError(f"--{name}: {message}")


def _size(name: str, value) -> int:
  if not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
    _fail(name, f"must be a whole number in [1, {MAX_SIZE}], got {value!r}")
  return value


def check_sizes(*names: str) -> None:
  """Each integer flag in `names` is in [1, MAX_SIZE]."""
  for name in names:
    _size(name, FLAGS[name].value)


def check_size_lists(*names: str) -> None:
  """Each list flag in `names` holds whole numbers in [1, MAX_SIZE]."""
  for name in names:
    values = FLAGS[name].value
    if not values:
      _fail(name, "is empty")
    for text in values:
      try:
        value = int(text)
      except ValueError:
        _fail(name, f"{text!r} is not a whole number")
      _size(name, value)


def check_positive_floats(*names: str) -> None:
  """Each float flag in `names` is finite and > 0."""
  for name in names:
    value = FLAGS[name].value
    if not (math.isfinite(value) and value > 0):
      _fail(name, f"must be a finite number > 0, got {value}")


def check_fraction(name: str, *, low_open: bool = True) -> None:
  """A float flag in (0, 1] (or [0, 1] with `low_open=False`)."""
  value = FLAGS[name].value
  low_ok = value > 0 if low_open else value >= 0
  if not (math.isfinite(value) and low_ok and value <= 1):
    _fail(name, f"must lie in {'(' if low_open else '['}0, 1], got {value}")


def check_choices(name: str, allowed) -> None:
  """Each value of a list flag is one of `allowed`."""
  unknown = [v for v in FLAGS[name].value if v not in allowed]
  if unknown or not FLAGS[name].value:
    _fail(name, f"unknown {unknown}, expected some of {sorted(allowed)}")


def check_output(name: str, path) -> None:
  """The file a flag names can be written (its folder exists or can be)."""
  path = os.path.abspath(str(path))
  if not str(FLAGS[name].value).strip():
    _fail(name, "is empty")
  if os.path.isdir(path):
    _fail(name, f"{path} is a directory")
  folder = os.path.dirname(path)
  existing = folder
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
    _fail(name, f"cannot write into {existing}")


def check_bytes_fit(names: str, need: int) -> None:
  """`need` bytes of inputs fit in the first device's memory."""
  # pylint: disable=import-outside-toplevel
  import jax

  from linrec_jax.training import memory_budget

  device = jax.devices()[0]
  budget = memory_budget.available_bytes(device)
  if budget is not None and need > budget:
    raise ValueError(
        f"{names}: the inputs need {need / memory_budget.GIB:.1f} GiB, more "
        f"than the {budget / memory_budget.GIB:.1f} GiB available on "
        f"{device.platform}"
    )


def check_model_fits(model, max_len: int, names: str) -> None:
  """The parameters and Adam moments of `model` fit in memory.

  Args:
    model: a linen model taking `[1, max_len]` item ids.
    max_len: its input length.
    names: the size flags to name, e.g. "--hidden, --max_len".
  """
  # pylint: disable=import-outside-toplevel
  import jax
  import jax.numpy as jnp

  from linrec_jax.training import memory_budget

  shapes = jax.eval_shape(
      model.init, jax.random.key(0), jnp.zeros((1, max_len), jnp.int32)
  )
  need = 3 * memory_budget.tree_bytes(shapes)
  device = jax.devices()[0]
  budget = memory_budget.available_bytes(device)
  if budget is not None and need > budget:
    raise ValueError(
        f"{names}: the parameters and optimiser state need "
        f"{need / memory_budget.GIB:.1f} GiB, more than the "
        f"{budget / memory_budget.GIB:.1f} GiB available on "
        f"{device.platform}"
    )
