"""Orbax checkpoints of a training run: arrays plus a small JSON of metadata.

Each checkpoint holds one pytree of arrays (the train state and the best
parameters so far, so that resuming is exact and atomic) and a JSON record of
the loop's bookkeeping (epoch, early-stopping counters, metric history, the
run's configuration, and a fingerprint of the arrays). The JSON record carries
the sha256 of its own canonical form (`integrity`), so an edited value is
found like a flipped byte of the arrays. Nothing is pickled.

Resume order, in one place: the newest intact checkpoint in
`workdir/checkpoints` > scratch. A checkpoint that fails to restore, whose
JSON record does not match its checksum, or whose arrays do not match their
recorded fingerprint, is moved aside to `workdir/checkpoints_damaged/` and
the next older one is tried; `Checkpointer.damaged` lists what was moved. A
checkpoint of another model (its recorded shapes differ from the target's) is
not damage: restoring raises `IncompatibleCheckpointError` and moves nothing.
Checkpoints written before the JSON record had a checksum (no `integrity`
key) are read as they are.
"""

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import sys
from typing import Any, Callable

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from linrec_jax import workdir as workdir_layout

INTEGRITY = "integrity"


def fingerprint(tree: Any) -> list[float]:
  """A cheap checksum of a pytree: float64 sum and sum of squares per leaf."""
  values = []
  for leaf in jax.tree.leaves(tree):
    x = np.asarray(leaf, dtype=np.float64)
    values.append([float(x.sum()), float(np.square(x).sum())])
  return values


class CheckpointWriteError(OSError):
  """A checkpoint could not be written; nothing of it is left behind."""


class IncompatibleCheckpointError(ValueError):
  """The checkpoints hold arrays of other shapes than the ones asked for."""


def meta_checksum(meta: dict) -> str:
  """sha256 of the canonical JSON of `meta` without its `integrity` key."""
  body = {k: v for k, v in meta.items() if k != INTEGRITY}
  text = json.dumps(body, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


def verify_meta(meta: dict) -> None:
  """Raises ValueError if a JSON record was edited after it was saved."""
  if INTEGRITY in meta and meta[INTEGRITY] != meta_checksum(meta):
    raise ValueError("its JSON metadata does not match its recorded checksum")


@dataclasses.dataclass(frozen=True)
class Damaged:
  """A checkpoint that was set aside: its step, why, and where it went."""

  step: int
  reason: str
  moved_to: str


def leaf_specs(tree: Any) -> dict[str, list]:
  """`{path: [shape, dtype]}` of every leaf of arrays or shape structs."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {
      jax.tree_util.keystr(path): [
          list(np.shape(leaf)),
          np.dtype(leaf.dtype).name,
      ]
      for path, leaf in flat
  }


def _same_fingerprint(recorded: Any, arrays: Any) -> bool:
  """Compares a recorded fingerprint with the arrays'; NaN equals NaN.

  A run that diverged holds NaN parameters; its checkpoints are intact.
  """
  recorded = np.asarray(recorded if recorded is not None else [], np.float64)
  actual = np.asarray(fingerprint(arrays), np.float64)
  return recorded.shape == actual.shape and np.array_equal(
      recorded, actual, equal_nan=True
  )


class Checkpointer:
  """Keeps the latest `max_to_keep` checkpoints of a run."""

  def __init__(
      self,
      directory: str,
      *,
      max_to_keep: int = 2,
      warn: Callable[[str], None] = logging.warning,
  ):
    """Opens (and creates) `directory`.

    Args:
      directory: where the step directories go.
      max_to_keep: the newest checkpoints kept.
      warn: receives one line per checkpoint set aside as damaged.
    """
    self.directory = os.path.abspath(directory)
    self.damaged: list[Damaged] = []
    self._warn = warn
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=False,
        create=True,
        cleanup_tmp_directories=True,
    )
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=options,
        item_names=(workdir_layout.ARRAYS_ITEM, workdir_layout.META_ITEM),
    )

  def save(self, step: int, arrays: Any, meta: dict) -> None:
    """Writes `arrays` (host pytree) and `meta` (JSON-able) as `step`."""
    meta = dict(
        meta,
        fingerprint=fingerprint(arrays),
        step=int(step),
        leaves=leaf_specs(arrays),
    )
    meta = json.loads(json.dumps(meta))  # As JsonRestore will read it back.
    meta[INTEGRITY] = meta_checksum(meta)
    if step in self._manager.all_steps():
      # A resumed run can reach a step saved before a crash; replace it.
      self._manager.delete(step)
    try:
      self._manager.save(
          step,
          args=ocp.args.Composite(
              **{
                  workdir_layout.ARRAYS_ITEM: ocp.args.StandardSave(arrays),
                  workdir_layout.META_ITEM: ocp.args.JsonSave(meta),
              }
          ),
      )
      self._manager.wait_until_finished()
    except Exception as error:  # A full or read-only disk, mostly.
      for partial in glob.glob(
          os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")
      ):
        shutil.rmtree(partial, ignore_errors=True)
      text = " ".join(str(error).split())
      raise CheckpointWriteError(
          f"cannot write checkpoint {os.path.join(self.directory, str(step))}"
          f" (is the disk full or read-only?): ..."
          f"{text[-160:]}"
      ) from error

  def restore_latest(
      self, abstract_arrays: Any, *, check: Callable[[dict], None] | None = None
  ) -> tuple[Any, dict] | None:
    """The newest intact checkpoint as `(arrays, meta)`, or None if none.

    Args:
      abstract_arrays: the target structure (`jax.eval_shape` of the arrays),
        so Optax states come back with their types.
      check: called with the newest intact JSON record before any array is
        read; what it raises (e.g. another configuration wrote the
        checkpoint) propagates and nothing is moved.

    Raises:
      IncompatibleCheckpointError: the newest readable checkpoint records
        other leaves (another model configuration wrote it).
    """
    wanted = leaf_specs(abstract_arrays)
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        meta = dict(
            self._manager.restore(
                step,
                args=ocp.args.Composite(
                    **{workdir_layout.META_ITEM: ocp.args.JsonRestore()}
                ),
            )[workdir_layout.META_ITEM]
        )
        verify_meta(meta)
      except Exception as error:  # Any failure to read means damage.
        self._set_aside(step, error)
        continue
      if check is not None:
        check(meta)
      if meta.get("leaves", wanted) != wanted:
        raise IncompatibleCheckpointError(
            f"checkpoint {os.path.join(self.directory, str(step))} holds "
            "arrays of another model configuration ("
            f"{_first_difference(meta['leaves'], wanted)}); resume with the "
            "configuration that wrote it, or use another workdir"
        )
      try:
        arrays = self._manager.restore(
            step,
            args=ocp.args.Composite(
                **{
                    workdir_layout.ARRAYS_ITEM: ocp.args.StandardRestore(
                        abstract_arrays
                    )
                }
            ),
        )[workdir_layout.ARRAYS_ITEM]
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
    reason = _one_line(error)
    self.damaged.append(Damaged(int(step), reason, target))
    self._warn(
        f"checkpoint {source} is damaged ({reason}); moved to "
        f"{target}, trying the previous one"
    )
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target):
      shutil.rmtree(target)
    shutil.move(source, target)
    self._manager.reload()

  def close(self) -> None:
    self._manager.close()


def quiet_failed_read_noise() -> None:
  """Drops the "Event loop is closed" errors of a failed Orbax read.

  When reading a damaged checkpoint fails, callbacks of the aborted reads
  still reach Orbax's closed asyncio loop; Python reports each as an
  unraisable exception with a traceback, pages of them. The failure itself
  is reported by `Checkpointer`; entry points call this once to keep their
  output to that line. Every other unraisable exception is reported as
  before.
  """
  previous = sys.unraisablehook

  def hook(unraisable):
    if (
        unraisable.exc_type is RuntimeError
        and str(unraisable.exc_value) == "Event loop is closed"
    ):
      return
    previous(unraisable)

  sys.unraisablehook = hook


def _one_line(error: Exception, limit: int = 200) -> str:
  """`Type: first line of the message`, at most `limit` characters."""
  lines = str(error).strip().splitlines()
  text = f"{type(error).__name__}: {lines[0] if lines else ''}"
  return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_difference(recorded: dict, wanted: dict) -> str:
  for path in sorted(set(recorded) | set(wanted)):
    there, here = recorded.get(path), wanted.get(path)
    if there != here:
      return f"{path}: {there or 'absent'} there, {here or 'absent'} here"
  return "no difference"
