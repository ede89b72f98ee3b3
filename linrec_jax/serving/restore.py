"""Loading a trained model from a training workdir, for inference only.

A workdir written by `experiments/train.py` holds `config.json` ({"dataset",
"preset", "data_dir", "config"}) and `checkpoints/<step>` with the items
"arrays" ({"state": TrainState, "best_params": params}) and "meta" (JSON,
with a fingerprint of the arrays, the run's configuration and the sha256 of
the prepared data's meta.json). This module reads them and never writes:
unlike `checkpointing.Checkpointer.restore_latest`, which moves a damaged
checkpoint aside, it may be pointed at the workdir of a run in progress.
"""

import dataclasses
import json
import os
import pathlib
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from linrec_jax import data
from linrec_jax import models
from linrec_jax import workdir as workdir_layout
from linrec_jax.training import checkpointing
from linrec_jax.training import run_binding
from linrec_jax.training.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Trained:
  """A trained model and what it was trained on.

  Attributes:
    model: the linen model (`models.make_model` of the configuration).
    params: the best parameters (highest validation NDCG@10), NumPy arrays.
    config: the run's `TrainConfig`.
    seqs: the prepared sequences it was trained on.
    data_dir: where they were read from.
    dataset: the `--dataset` the run was started with.
    step: the training step of the checkpoint read.
    best_epoch: the epoch the best parameters come from (-1: unknown).
    skipped: one line per newer checkpoint that could not be read.
  """

  model: Any
  params: Any
  config: TrainConfig
  seqs: data.Sequences
  data_dir: str
  dataset: str
  step: int
  best_epoch: int = -1
  skipped: tuple[str, ...] = ()


def read_config(workdir: str) -> dict:
  """The run description in `workdir/config.json`, with a TrainConfig."""
  path = os.path.join(workdir, workdir_layout.CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{path} not found: is {workdir} the --workdir of a training run?"
    )
  with open(path) as f:
    run = json.load(f)
  known = {field.name for field in dataclasses.fields(TrainConfig)}
  unknown = sorted(set(run["config"]) - known)
  if unknown:
    logging.warning("%s: ignoring unknown config fields %s", path, unknown)
  run["config"] = TrainConfig(
      **{k: v for k, v in run["config"].items() if k in known}
  )
  return run


def load_best_params(workdir: str) -> tuple[Any, dict]:
  """The best parameters of the newest intact checkpoint, read-only.

  Args:
    workdir: a training workdir.

  Returns:
    `(params, meta)`: a nested dict of NumPy arrays, and the checkpoint's
    JSON record ("step", "progress" with "best_epoch", ...) with "skipped":
    one line per newer checkpoint that could not be read.

  Raises:
    FileNotFoundError: no intact checkpoint.
  """
  directory = os.path.abspath(
      os.path.join(workdir, workdir_layout.CHECKPOINTS_DIR)
  )
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoints in {workdir} ({directory})")
  options = ocp.CheckpointManagerOptions(read_only=True, create=False)
  errors = []
  with ocp.CheckpointManager(
      directory,
      options=options,
      item_names=(workdir_layout.ARRAYS_ITEM, workdir_layout.META_ITEM),
  ) as manager:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        # Without a target the arrays come back as nested dicts of NumPy
        # arrays, so no optimiser has to be rebuilt to read the parameters.
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                **{
                    workdir_layout.ARRAYS_ITEM: ocp.args.StandardRestore(),
                    workdir_layout.META_ITEM: ocp.args.JsonRestore(),
                }
            ),
        )
        params = restored[workdir_layout.ARRAYS_ITEM]["best_params"]
        checkpointing.verify_meta(dict(restored[workdir_layout.META_ITEM]))
        _check_fingerprint(params, restored[workdir_layout.META_ITEM])
      except Exception as error:  # Any failure to read means damage.
        first_line = (str(error).strip().splitlines() or [""])[0]
        errors.append(
            f"step {step}: {type(error).__name__}: {first_line}"[:300]
        )
        logging.warning(
            "checkpoint %s/%s unreadable, trying an older one: %s",
            directory,
            step,
            errors[-1],
        )
        continue
      return params, dict(
          restored[workdir_layout.META_ITEM], step=int(step), skipped=errors
      )
  raise FileNotFoundError(
      f"no intact checkpoint in {directory}"
      + (": " + "; ".join(errors) if errors else "")
  )


def _check_fingerprint(params, meta: dict) -> None:
  """Checks `params` against the fingerprint `Checkpointer.save` recorded.

  The fingerprint covers the leaves of {"best_params", "state"} in
  flattening order, so the best parameters' leaves come first.
  """
  got = np.asarray(checkpointing.fingerprint(params), np.float64)
  recorded = np.asarray(meta.get("fingerprint", [])[: len(got)], np.float64)
  if not np.array_equal(recorded, got, equal_nan=True):
    raise ValueError("best_params do not match their recorded fingerprint")


def load_trained(workdir: str, *, data_dir: str | None = None) -> Trained:
  """Loads a run's model, best parameters, configuration and data.

  Args:
    workdir: the `--workdir` of `experiments/train.py`.
    data_dir: the prepared dataset; default the `data_dir` of config.json.

  Returns:
    A `Trained`.

  The configuration is the one the checkpoint records (config.json's for
  checkpoints written before they recorded it), and the data must be the
  prepared data the checkpoint records.

  Raises:
    FileNotFoundError: config.json, the data or an intact checkpoint is
      missing.
    ValueError: the parameters do not fit the configured model, or the data
      is not the data the run was trained on.
  """
  run = read_config(workdir)
  data_dir = data_dir or run["data_dir"]
  params, meta = load_best_params(workdir)
  config = run["config"]
  if "config" in meta:
    config = TrainConfig(**run_binding.recorded_config(meta["config"]))
  run_binding.check_data(
      meta.get("data_fingerprint"), data_dir, workdir=workdir
  )
  seqs = data.load(data_dir)
  model = models.make_model(config, seqs.num_items)
  _check_shapes(model, params, config.max_len, workdir)
  best_epoch = meta.get("progress", {}).get("best_epoch", -1)
  return Trained(
      model,
      params,
      config,
      seqs,
      str(pathlib.Path(data_dir)),
      run.get("dataset", ""),
      meta["step"],
      best_epoch,
      tuple(meta["skipped"]),
  )


def _check_shapes(model, params, max_len, workdir) -> None:
  expected = jax.eval_shape(
      model.init, jax.random.key(0), jnp.zeros((1, max_len), jnp.int32)
  )["params"]
  shape = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)
  if shape(expected) != shape(params):
    raise ValueError(
        f"the checkpoint in {workdir} does not fit the model its config.json "
        "describes (different parameter names or shapes)"
    )
