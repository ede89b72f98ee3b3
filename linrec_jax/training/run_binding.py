"""A workdir belongs to one run: its configuration and its prepared data.

Every checkpoint records the resolved `TrainConfig`, the run's total steps
and a fingerprint of the prepared data. A rerun on the same workdir is
compared with that record before any work:
- a field in `RESUMABLE_CHANGES` may change (it only extends or observes the
  run); `epochs` and `max_steps` change the total steps, which only a
  constant learning rate does not depend on, and they cannot cut the run
  below the steps already trained;
- any other difference, or other prepared data, stops the rerun with one
  line naming every differing flag (old and new value).
Accepted changes are appended to `workdir/config_changes.jsonl`.
"""

import dataclasses
import hashlib
import json
import os
import time
from typing import Any

from linrec_jax.training.config import TrainConfig

# The fields a resumed run may change, and why that is safe. The one list.
RESUMABLE_CHANGES = {
    "epochs": "extends the run (constant learning rate only)",
    "max_steps": "extends the run (constant learning rate only)",
    "patience": "when early stopping ends the run",
    "time_limit_minutes": "when this process stops",
    "log_every_steps": "console and TensorBoard only",
    "eval_batch_size": "evaluation batching only (padded rows do not count)",
    "checkpoint_every_steps": "when checkpoints are written",
    "keep_checkpoints": "how many checkpoints are kept",
    "devices": "results do not depend on the device count",
    "parallel": "mesh and pmap run the same step",
}
# Fields that set the run's total steps, on which a decaying schedule depends.
LENGTH_FIELDS = ("epochs", "max_steps")
# Fields that decide when the run ends: changing one may reopen a finished
# run; a finished run they do not reopen keeps its recorded values.
EXTENDING_FIELDS = LENGTH_FIELDS + ("patience", "time_limit_minutes")
CHANGES_FILE = "config_changes.jsonl"
DATA_META_FILE = "meta.json"


class WorkdirMismatchError(ValueError):
  """A workdir holds checkpoints of another configuration or other data."""


def prepared_fingerprint(data_dir: str) -> str:
  """The identity of a prepared directory: sha256 of its meta.json bytes."""
  with open(os.path.join(data_dir, DATA_META_FILE), "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def recorded_config(fields: dict) -> dict:
  """A recorded configuration with today's fields: absent ones at default."""
  defaults = dataclasses.asdict(TrainConfig())
  return {name: fields.get(name, default) for name, default in defaults.items()}


def differences(recorded: dict, config: TrainConfig) -> dict[str, tuple]:
  """`{field: (recorded value, new value)}` of every field that differs,
  in the order of their names."""
  old = recorded_config(recorded)
  new = dataclasses.asdict(config)
  return {
      name: (old[name], new[name])
      for name in sorted(new)
      if old[name] != new[name]
  }


def _describe(name: str, old: Any, new: Any) -> str:
  return f"--{name}: {old!r} there, {new!r} here"


def check_resume(
    recorded: dict,
    config: TrainConfig,
    *,
    workdir: str,
    recorded_total_steps: int | None,
    total_steps: int,
    step: int,
    finished: bool,
) -> dict[str, tuple]:
  """Compares a rerun's configuration with the one its checkpoint records.

  Args:
    recorded: the configuration fields the checkpoint records.
    config: the rerun's configuration.
    workdir: named in the message.
    recorded_total_steps: the total steps the checkpoint's run planned
      (None: not recorded).
    total_steps: the total steps of the rerun.
    step: the checkpoint's step.
    finished: whether the checkpoint's run had ended.

  Returns:
    The accepted changes, `{field: (old, new)}` (empty when none).

  Raises:
    WorkdirMismatchError: one line naming every refused difference.
  """
  changes = differences(recorded, config)
  refused = [
      _describe(name, *values)
      for name, values in changes.items()
      if name not in RESUMABLE_CHANGES
  ]
  length = {
      name: values for name, values in changes.items() if name in LENGTH_FIELDS
  }
  plan_changed = (
      recorded_total_steps is not None and total_steps != recorded_total_steps
  )
  if length and plan_changed:
    moved = ", ".join(
        _describe(name, *values) for name, values in length.items()
    )
    if config.lr_schedule != "constant":
      refused.append(
          f"{moved} (the {config.lr_schedule} learning-rate schedule spans "
          f"the run's {recorded_total_steps} steps; {total_steps} would "
          "change every learning rate, so only a constant schedule can be "
          "extended)"
      )
    elif total_steps < step or (total_steps == step and not finished):
      refused.append(
          f"{moved} ({total_steps} steps in all, but the run has already "
          f"trained {step}: a run cannot be shortened below what it ran)"
      )
  if refused:
    raise WorkdirMismatchError(
        f"--workdir={workdir} holds a run of another configuration: "
        + "; ".join(refused)
        + ". Rerun with the recorded values, or use another --workdir"
    )
  return changes


def check_data(
    recorded_fingerprint: str | None, data_dir: str, *, workdir: str
) -> None:
  """Raises WorkdirMismatchError unless `data_dir` is the recorded data."""
  if recorded_fingerprint is None:
    return
  actual = prepared_fingerprint(data_dir)
  if actual != recorded_fingerprint:
    raise WorkdirMismatchError(
        f"--workdir={workdir} was trained on other prepared data than "
        f"{os.path.join(data_dir, DATA_META_FILE)} (sha256 "
        f"{recorded_fingerprint[:12]}... recorded, {actual[:12]}... here); "
        "use the prepared directory it was trained on, or another --workdir"
    )


def record_changes(
    workdir: str, changes: dict[str, tuple], *, step: int
) -> None:
  """Appends one line of accepted changes to `workdir/config_changes.jsonl`."""
  if not changes:
    return
  record = {
      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "step": step,
      "changes": {
          name: {"old": old, "new": new}
          for name, (old, new) in sorted(changes.items())
      },
  }
  with open(os.path.join(workdir, CHANGES_FILE), "a") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")
    f.flush()
    os.fsync(f.fileno())
