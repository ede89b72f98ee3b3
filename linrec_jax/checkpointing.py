"""Orbax checkpoints of a training run: arrays plus a small JSON of metadata.

Each checkpoint holds one pytree of arrays (the train state and the best
parameters so far, so that resuming is exact and atomic) and a JSON record of
the loop's bookkeeping (epoch, early-stopping counters, metric history, and a
fingerprint of the arrays). Nothing is pickled.

Resume order, in one place: the newest intact checkpoint in
`workdir/checkpoints` > scratch. A checkpoint that fails to restore, or whose
arrays do not match their recorded fingerprint, is reported, moved aside to
`workdir/checkpoints_damaged/`, and the next older one is tried.
"""

import os
import shutil
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

_ARRAYS = "arrays"
_META = "meta"


def fingerprint(tree: Any) -> list[float]:
  """A cheap checksum of a pytree: float64 sum and sum of squares per leaf."""
  values = []
  for leaf in jax.tree.leaves(tree):
    x = np.asarray(leaf, dtype=np.float64)
    values.append([float(x.sum()), float(np.square(x).sum())])
  return values


def _same_fingerprint(recorded: Any, arrays: Any) -> bool:
  """Compares a recorded fingerprint with the arrays'; NaN equals NaN.

  A run that diverged holds NaN parameters; its checkpoints are intact.
  """
  recorded = np.asarray(recorded if recorded is not None else [], np.float64)
  actual = np.asarray(fingerprint(arrays), np.float64)
  return (recorded.shape == actual.shape and
          np.array_equal(recorded, actual, equal_nan=True))


class Checkpointer:
  """Keeps the latest `max_to_keep` checkpoints of a run."""

  def __init__(self, directory: str, *, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=False,
        create=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=(_ARRAYS, _META))

  def save(self, step: int, arrays: Any, meta: dict) -> None:
    """Writes `arrays` (host pytree) and `meta` (JSON-able) as `step`."""
    meta = dict(meta, fingerprint=fingerprint(arrays), step=int(step))
    if step in self._manager.all_steps():
      # A resumed run can reach a step saved before a crash; replace it.
      self._manager.delete(step)
    self._manager.save(step, args=ocp.args.Composite(**{
        _ARRAYS: ocp.args.StandardSave(arrays),
        _META: ocp.args.JsonSave(meta)}))
    self._manager.wait_until_finished()

  def restore_latest(self, abstract_arrays: Any) -> tuple[Any, dict] | None:
    """The newest intact checkpoint as `(arrays, meta)`, or None if none.

    Args:
      abstract_arrays: the target structure (`jax.eval_shape` of the arrays),
        so Optax states come back with their types.
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(**{
            _ARRAYS: ocp.args.StandardRestore(abstract_arrays),
            _META: ocp.args.JsonRestore()}))
        arrays, meta = restored[_ARRAYS], dict(restored[_META])
        if not _same_fingerprint(meta.get("fingerprint"), arrays):
          raise ValueError("arrays do not match their recorded fingerprint")
      except Exception as error:  # Any failure to read means damage.
        self._set_aside(step, error)
        continue
      return arrays, meta
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    source = os.path.join(self.directory, str(step))
    target = os.path.join(self.directory + "_damaged", str(step))
    logging.warning("checkpoint %s is damaged (%s: %s); moved to %s, trying "
                    "the previous one", source, type(error).__name__,
                    str(error)[:300], target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target):
      shutil.rmtree(target)
    shutil.move(source, target)
    self._manager.reload()

  def close(self) -> None:
    self._manager.close()
