"""Orbax checkpoints of a training run: arrays plus a small JSON of metadata.

Each checkpoint holds one pytree of arrays (the train state and the best
parameters so far, so that resuming is exact and atomic) and a JSON record of
the loop's bookkeeping (epoch, early-stopping counters, metric history, and a
fingerprint of the arrays). Nothing is pickled.

Resume order, in one place: the newest intact checkpoint in
`workdir/checkpoints` > scratch. A checkpoint that fails to restore, or whose
arrays do not match their recorded fingerprint, is reported, moved aside to
`workdir/checkpoints_damaged/`, and the next older one is tried. A checkpoint
of another model (its recorded shapes differ from the target's) is not
damage: restoring raises `IncompatibleCheckpointError` and moves nothing.
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


class IncompatibleCheckpointError(ValueError):
  """The checkpoints hold arrays of other shapes than the ones asked for."""


def leaf_specs(tree: Any) -> dict[str, list]:
  """`{path: [shape, dtype]}` of every leaf of arrays or shape structs."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): [list(np.shape(leaf)),
                                       np.dtype(leaf.dtype).name]
          for path, leaf in flat}


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
    meta = dict(meta, fingerprint=fingerprint(arrays), step=int(step),
                leaves=leaf_specs(arrays))
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

    Raises:
      IncompatibleCheckpointError: the newest readable checkpoint records
        other leaves (another model configuration wrote it).
    """
    wanted = leaf_specs(abstract_arrays)
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        meta = dict(self._manager.restore(step, args=ocp.args.Composite(**{
            _META: ocp.args.JsonRestore()}))[_META])
      except Exception as error:  # Any failure to read means damage.
        self._set_aside(step, error)
        continue
      if meta.get("leaves", wanted) != wanted:
        raise IncompatibleCheckpointError(
            f"checkpoint {os.path.join(self.directory, str(step))} holds "
            "arrays of another model configuration ("
            f"{_first_difference(meta['leaves'], wanted)}); resume with the "
            "configuration that wrote it, or use another workdir")
      try:
        arrays = self._manager.restore(step, args=ocp.args.Composite(**{
            _ARRAYS: ocp.args.StandardRestore(abstract_arrays)}))[_ARRAYS]
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


def _first_difference(recorded: dict, wanted: dict) -> str:
  for path in sorted(set(recorded) | set(wanted)):
    there, here = recorded.get(path), wanted.get(path)
    if there != here:
      return f"{path}: {there or 'absent'} there, {here or 'absent'} here"
  return "no difference"
