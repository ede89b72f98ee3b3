"""The training loop: `train_and_evaluate(config, data_dir, workdir)`.

Every step is a pure function of (state, batch, rng): the batch of global
step s is `epoch = s // steps_per_epoch, index = s % steps_per_epoch` of a
loader seeded by the config, and the step's randomness is `fold_in(rng, s)`.
So a run that is killed and resumed from its last checkpoint retraces exactly
the steps of an uninterrupted run and ends with the same metrics.

A workdir belongs to one run: one process at a time trains in it
(`workdir_lock`), and a rerun must match the configuration and the prepared
data its checkpoints record (`run_binding`), checked before any work. A step
whose loss, gradients or new parameters are not finite is not applied; the
host reads the steps' flags at log, checkpoint and epoch boundaries, before
anything is saved, and stops with `NonFiniteError`.
"""

import dataclasses
import json
import os
import resource
import time
import zipfile
import zlib
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from linrec_jax import data
from linrec_jax import metrics
from linrec_jax import models
from linrec_jax import workdir as workdir_layout
from linrec_jax.training import checkpointing
from linrec_jax.training import compiler_options
from linrec_jax.training import memory_budget
from linrec_jax.training import optimizer
from linrec_jax.training import run_binding
from linrec_jax.training import sharding
from linrec_jax.training import steps
from linrec_jax.training import workdir_lock
from linrec_jax.training.config import TrainConfig
from linrec_jax.training.evaluation import Evaluator
from linrec_jax.training.reporting import Reporter

KS = (5, 10, 20)


def early_stop_metric(config: TrainConfig) -> str:
  """The validation metric that selects the best epoch: NDCG@10, history
  kept (RecBole's protocol), or excluded with `--exclude_history`."""
  if config.exclude_history and config.eval_protocol == "full":
    return "ndcg@10" + metrics.HISTORY_EXCLUDED
  return "ndcg@10"


# Its former home; the models package holds it now.
make_model = models.make_model


def _mask_token(model) -> int | None:
  return getattr(model, "mask_token", None)


def make_loader(config: TrainConfig, seqs, model) -> data.TrainBatches:
  """The training batches of a run: `config`'s sampling of `seqs` (a
  loaded prepared dataset) for `model` (its mask token, if any)."""
  return data.TrainBatches(
      seqs,
      mode=config.train_mode,
      max_len=config.max_len,
      batch_size=config.batch_size,
      seed=config.seed,
      pad_side=config.pad_side,
      windows_per_user=config.windows_per_user,
      mask_prob=config.mask_prob,
      mask_token=_mask_token(model),
      max_predictions=config.max_predictions or None,
      mask_last_prob=config.mask_last_prob,
      length_bucket=config.length_bucket,
      window_stride=config.window_stride,
  )


class NonFiniteError(ArithmeticError):
  """A training step produced a non-finite loss, gradient or parameter."""


@dataclasses.dataclass
class _Progress:
  """The loop's bookkeeping, saved as JSON beside the arrays."""

  best_metric: float = -1.0
  best_epoch: int = -1
  bad_epochs: int = 0
  finished: bool = False
  stop_reason: str = ""
  epoch_loss_sum: float = 0.0
  epoch_loss_steps: int = 0
  epoch_seconds: float = 0.0
  history: list = dataclasses.field(default_factory=list)


def train_and_evaluate(
    config: TrainConfig,
    data_dir: str,
    workdir: str,
    *,
    report: Callable[[str], None] = print,
    run_info: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
  """Trains with early stopping on validation NDCG@10, then tests the best.

  Args:
    config: a validated configuration.
    data_dir: a directory written by `data_prep`.
    workdir: checkpoints, logs and `results.json` go here; a run finding
      checkpoints in it resumes from the newest intact one.
    report: receives human-readable progress lines.
    run_info: what the caller adds to `workdir/config.json` beside the
      configuration (e.g. the dataset and preset names). The file is written
      once the workdir is known to hold this run's checkpoints or none.
    on_epoch: called with each epoch's record (as in `metrics.jsonl`); an
      exception it raises ends the run (a search pruning a trial does so).

  Returns:
    The content of `results.json`.

  Raises:
    run_binding.WorkdirMismatchError: the workdir's checkpoints record
      another configuration or other prepared data (nothing is written).
    workdir_lock.WorkdirBusyError: another process trains in the workdir.
    NonFiniteError: a step was not finite; the last good checkpoint stays
      and no results are written.
    memory_budget.MemoryBudgetError: the run cannot fit in memory.
  """
  start_time = time.perf_counter()
  seqs = _load_prepared(data_dir)
  model = models.make_model(config, seqs.num_items)
  devices = sharding.select_devices(config.devices)
  sharding.check_divisible(config.batch_size, len(devices), "batch_size")
  if (config.batch_size // len(devices)) % config.microbatches:
    raise ValueError(
        f"--microbatches={config.microbatches} does not divide the "
        f"{config.batch_size // len(devices)} rows per device of "
        f"--batch_size={config.batch_size}"
    )
  sharding.check_divisible(
      config.eval_batch_size, len(devices), "eval_batch_size"
  )
  loader = make_loader(config, seqs, model)
  steps_per_epoch = loader.num_batches
  if steps_per_epoch == 0:
    raise ValueError(
        f"--batch_size={config.batch_size} exceeds the "
        f"{loader.num_examples} training examples of an epoch"
    )
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  # Shapes first: the optimiser state's structure does not depend on the
  # total steps, which a resumed run may change.
  abstract = jax.eval_shape(
      lambda: _initial_arrays(
          model, _optimizer(config, 1), init_rng, config.max_len
      )
  )
  memory_budget.check(
      config,
      abstract,
      num_items=seqs.num_items,
      num_devices=len(devices),
      device=devices[0],
  )
  run = _Run(
      config,
      data_dir,
      workdir,
      seqs,
      model,
      devices,
      loader,
      abstract,
      init_rng,
      train_rng,
      start_time,
  )
  if jax.process_index() != 0:  # Process 0 holds the lock for the job.
    return _train(
        run, report, run_info, announce=lambda: None, on_epoch=on_epoch
    )
  with workdir_lock.hold(workdir) as announce:
    return _train(run, report, run_info, announce=announce, on_epoch=on_epoch)


@dataclasses.dataclass(frozen=True)
class _Run:
  """What `train_and_evaluate` checks before it touches the workdir."""

  config: TrainConfig
  data_dir: str
  workdir: str
  seqs: data.Sequences
  model: object
  devices: list
  loader: data.TrainBatches
  abstract: object
  init_rng: jax.Array
  train_rng: jax.Array
  start_time: float


def _train(run: _Run, report, run_info, *, announce, on_epoch=None) -> dict:
  """Resumes or starts the run in its (locked) workdir, then tests it.

  Nothing is written before the checkpoints are known to belong to this
  run; then `announce()` names this process in the lock file.
  """
  config, data_dir, workdir, seqs = (
      run.config,
      run.data_dir,
      run.workdir,
      run.seqs,
  )
  model, devices, loader, start_time = (
      run.model,
      run.devices,
      run.loader,
      run.start_time,
  )
  shard = (jax.process_index(), jax.process_count())
  steps_per_epoch = loader.num_batches
  total_steps = _total_steps(config, steps_per_epoch)
  data_fingerprint = run_binding.prepared_fingerprint(data_dir)
  resumed = _resume(run, total_steps)
  checkpointer, arrays, progress = (
      resumed.checkpointer,
      resumed.arrays,
      resumed.progress,
  )
  config, total_steps, changes, kept = (
      resumed.config,
      resumed.total_steps,
      resumed.changes,
      resumed.kept,
  )
  restored, damage = resumed.restored, resumed.damage
  restored_step, reopened = resumed.restored_step, resumed.reopened
  tx = _optimizer(config, total_steps)
  launcher = sharding.make_launcher(
      config.parallel,
      devices,
      model,
      tx,
      loss=config.loss,
      num_items=seqs.num_items,
      num_negatives=config.num_negatives,
      protocol=config.eval_protocol,
      ks=KS,
      microbatches=config.microbatches,
      loss_normalizer=(
          loader.mean_targets_per_batch
          if config.loss_normalizer == "epoch"
          else 0.0
      ),
      compiler_options=compiler_options.train_step_options(
          config.train_mode, devices[0].platform
      ),
  )
  evaluators = {
      stage: Evaluator(
          launcher,
          seqs,
          stage=stage,
          protocol=config.eval_protocol,
          max_len=config.max_len,
          batch_size=config.eval_batch_size,
          pad_side=config.pad_side,
          mask_token=_mask_token(model),
          seed=config.seed + 1,
      )
      for stage in ("valid", "test")
  }

  announce()
  reporter = Reporter(
      workdir,
      total_steps=total_steps,
      report=report,
      enabled=jax.process_index() == 0,
      steps_per_epoch=steps_per_epoch,
      on_epoch=on_epoch,
      learning_rate=optimizer.learning_rate_schedule(
          config.lr, config.lr_schedule, config.warmup_steps, total_steps
      ),
  )
  if jax.process_index() == 0:
    run_binding.record_changes(workdir, changes, step=restored_step)
    if reopened:  # The old results describe a shorter run.
      _remove(os.path.join(workdir, workdir_layout.RESULTS_FILE))
  reporter.config(
      {
          **(run_info or {}),
          "data_dir": os.path.abspath(data_dir),
          "config": dataclasses.asdict(config),
      }
  )
  reporter.line(_devices_line(devices, config.parallel))
  resumed = (
      f"resumed from step {restored_step} ({checkpointer.directory})"
      if restored is not None
      else "no intact checkpoint left: training from scratch"
  )
  if damage or restored is not None:
    reporter.line(f"{damage}; {resumed}" if damage else resumed)
  if restored is not None:
    for name, (old, new) in sorted(changes.items()):
      reporter.line(f"--{name} changed from {old!r} to {new!r}")
    if kept:
      reporter.line(
          f"the run is finished ({progress.stop_reason}); "
          + ", ".join(f"--{name}={new!r}" for name, (_, new) in kept.items())
          + " does not reopen it: testing its best parameters as recorded"
      )
  state = launcher.put_state(arrays["state"])
  best_params = arrays["best_params"]
  rng = launcher.put_replicated(run.train_rng)
  saved_step = restored_step if restored is not None else None

  def save(step: int):
    nonlocal saved_step
    host = {"state": launcher.get_state(state), "best_params": best_params}
    checkpointer.save(
        step,
        host,
        {
            "progress": dataclasses.asdict(progress),
            "config": dataclasses.asdict(config),
            "total_steps": total_steps,
            "data_fingerprint": data_fingerprint,
        },
    )
    saved_step = step

  def fold_running_loss():
    nonlocal loss_sum, loss_steps
    progress.epoch_loss_sum += float(loss_sum)
    progress.epoch_loss_steps += loss_steps
    loss_sum, loss_steps = jnp.zeros(()), 0

  step = int(jax.device_get(launcher.get_state(state.step)))
  epoch_start = time.perf_counter() - progress.epoch_seconds
  loss_sum, loss_steps = jnp.zeros(()), 0
  # The steps' finite flags since the last boundary, read there in one go.
  finite_flags, flags_from = [], step

  def check_finite():
    nonlocal finite_flags, flags_from
    flags = np.asarray(jax.device_get(finite_flags), bool)
    if not flags.all():
      checkpointer.close()
      raise NonFiniteError(
          _non_finite_message(
              config,
              flags_from + int(np.argmin(flags)) + 1,
              steps_per_epoch,
              saved_step,
              restored_step,
          )
      )
    finite_flags, flags_from = [], step

  if not progress.finished:
    reporter.start_training(step)
  while step < total_steps and not progress.finished:
    epoch, index = divmod(step, steps_per_epoch)
    batch = loader.batch(epoch, index, shard=shard)
    state, step_metrics = launcher.train_step(
        state, launcher.put_batch(batch), rng
    )
    loss_sum = loss_sum + launcher.unreplicate(step_metrics["loss"])
    finite_flags.append(launcher.unreplicate(step_metrics["finite"]))
    loss_steps += 1
    step += 1
    reporter.advance(step)
    if step % config.log_every_steps == 0:
      check_finite()
      mean_loss = (progress.epoch_loss_sum + float(loss_sum)) / (
          progress.epoch_loss_steps + loss_steps
      )
      reporter.step(step, mean_loss)
    if step % steps_per_epoch == 0 or step == total_steps:
      check_finite()
      fold_running_loss()
      record = {
          "epoch": epoch + 1,
          "step": step,
          "seconds": time.perf_counter() - epoch_start,
          "train_loss": progress.epoch_loss_sum
          / max(progress.epoch_loss_steps, 1),
      }
      if (epoch + 1) % config.eval_every_epochs == 0 or step == total_steps:
        valid_start = time.perf_counter()
        record["valid"] = evaluators["valid"](state.params)
        record["valid_seconds"] = time.perf_counter() - valid_start
        if record["valid"][early_stop_metric(config)] > progress.best_metric:
          progress.best_metric = record["valid"][early_stop_metric(config)]
          progress.best_epoch = epoch + 1
          progress.bad_epochs = 0
          best_params = launcher.get_state(state).params
        else:
          progress.bad_epochs += 1
      progress.history.append(record)
      reporter.epoch(record, progress.history)
      progress.stop_reason = _stop_reason(
          config, progress, step, total_steps, time.perf_counter() - start_time
      )
      progress.finished = bool(progress.stop_reason)
      progress.epoch_loss_sum, progress.epoch_loss_steps = 0.0, 0
      progress.epoch_seconds = 0.0
      save(step)
      epoch_start = time.perf_counter()
    elif step % config.checkpoint_every_steps == 0:
      check_finite()
      fold_running_loss()
      progress.epoch_seconds = time.perf_counter() - epoch_start
      save(step)

  checkpointer.close()
  results = _results(
      run,
      config,
      progress,
      valid=evaluators["valid"],
      test=evaluators["test"],
      best=launcher.put_state(best_params),
      step=step,
      data_fingerprint=data_fingerprint,
  )
  reporter.results(results)
  return results


@dataclasses.dataclass(frozen=True)
class _Resumed:
  """Where `_resume` leaves a run: its arrays, progress and configuration."""

  checkpointer: checkpointing.Checkpointer
  arrays: dict
  progress: _Progress
  config: TrainConfig
  total_steps: int
  changes: dict
  kept: dict
  restored: object
  damage: str
  restored_step: int
  reopened: bool


def _resume(run: _Run, total_steps: int) -> _Resumed:
  """Restores the newest intact checkpoint of this run, or starts afresh.

  Raises `run_binding.WorkdirMismatchError` (nothing written) when the
  checkpoints belong to another configuration or other data. A finished
  run that a change of its length or stop rules does not reopen keeps the
  values it ran under (`kept`).
  """
  config, data_dir, workdir = run.config, run.data_dir, run.workdir
  steps_per_epoch = run.loader.num_batches
  checkpointer = checkpointing.Checkpointer(
      os.path.join(workdir, workdir_layout.CHECKPOINTS_DIR),
      max_to_keep=config.keep_checkpoints,
      warn=lambda line: None,
  )
  changes, recorded_config = {}, None

  def check_binding(meta: dict):
    nonlocal changes, recorded_config
    recorded = meta.get("config")
    if recorded is None:  # Written before checkpoints held their config.
      recorded = _config_json_fields(workdir)
      if recorded is None:
        return
    run_binding.check_data(
        meta.get("data_fingerprint"), data_dir, workdir=workdir
    )
    recorded_config = TrainConfig(**run_binding.recorded_config(recorded))
    changes = run_binding.check_resume(
        recorded,
        config,
        workdir=workdir,
        recorded_total_steps=_total_steps(recorded_config, steps_per_epoch),
        total_steps=total_steps,
        step=int(meta["step"]),
        finished=bool(meta.get("progress", {}).get("finished")),
    )

  try:
    restored = checkpointer.restore_latest(run.abstract, check=check_binding)
  except BaseException:
    checkpointer.close()
    raise
  damage = _damage_line(checkpointer.directory, checkpointer.damaged)
  if restored is None:
    init = lambda: _initial_arrays(
        run.model, _optimizer(config, total_steps), run.init_rng, config.max_len
    )
    arrays, progress = jax.device_get(init()), _Progress()
  else:
    arrays, meta = restored
    progress = _Progress(**meta["progress"])
  restored_step = int(arrays["state"].step)
  reopened = _reopen(progress, config, changes, restored_step, total_steps)
  kept = {}
  if progress.finished and changes and not reopened:
    # A finished run keeps the length and stop rules it ran under.
    kept = {
        name: changes.pop(name)
        for name in run_binding.EXTENDING_FIELDS
        if name in changes
    }
    config = dataclasses.replace(
        config, **{name: getattr(recorded_config, name) for name in kept}
    )
    total_steps = _total_steps(config, steps_per_epoch)
  return _Resumed(
      checkpointer=checkpointer,
      arrays=arrays,
      progress=progress,
      config=config,
      total_steps=total_steps,
      changes=changes,
      kept=kept,
      restored=restored,
      damage=damage,
      restored_step=restored_step,
      reopened=reopened,
  )


def _results(
    run: _Run, config, progress, *, valid, test, best, step, data_fingerprint
) -> dict:
  """The content of `results.json`: both stages at the best parameters."""
  devices = run.devices
  return {
      "config": dataclasses.asdict(config),
      "eval_protocol": _protocol_description(config),
      "valid": valid(best),
      "test": test(best),
      "best_epoch": progress.best_epoch,
      # A run reopened after ending mid-epoch records that epoch twice.
      "epochs_run": len({r["epoch"] for r in progress.history}),
      "stop_reason": progress.stop_reason,
      "steps": step,
      "steps_per_epoch": run.loader.num_batches,
      "seconds_per_epoch": _mean([r["seconds"] for r in progress.history]),
      "devices": _device_count_and_kind(devices),
      # This process only: a resumed run counts from its last start.
      "wall_seconds_this_process": time.perf_counter() - run.start_time,
      "peak_rss_gib_this_process": _peak_rss_gib(),
      "data": {
          "dir": os.path.abspath(run.data_dir),
          "meta": run.seqs.meta,
          "fingerprint": data_fingerprint,
      },
  }


def _device_count_and_kind(devices) -> str:
  """E.g. '4 x cpu': what results.json and the run header say."""
  return f"{len(devices)} x {devices[0].device_kind}"


def _devices_line(devices, parallel: str) -> str:
  """Where the steps run, e.g. 'devices: 4 x cpu (1 process), launcher pmap'."""
  processes = len({d.process_index for d in devices})
  return (
      f"devices: {_device_count_and_kind(devices)} ({processes} "
      f"process{'es' if processes > 1 else ''}), launcher {parallel}"
  )


def _load_prepared(data_dir: str) -> data.Sequences:
  """`data.load`, with every failure to read naming the directory."""
  try:
    return data.load(data_dir)
  except (
      ValueError,
      OSError,
      EOFError,
      KeyError,
      zipfile.BadZipFile,
      zlib.error,
  ) as error:
    text = (str(error).strip().splitlines() or [""])[0]
    if str(data_dir) in text:
      raise
    raise ValueError(
        f"{data_dir}: cannot read the prepared data "
        f"({type(error).__name__}: {text})"
    ) from error


def _optimizer(config: TrainConfig, total_steps: int):
  return optimizer.make_optimizer(
      lr=config.lr,
      schedule=config.lr_schedule,
      warmup_steps=config.warmup_steps,
      total_steps=total_steps,
      weight_decay=config.weight_decay,
      grad_clip=config.grad_clip,
  )


def _total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
  total = config.epochs * steps_per_epoch
  return min(total, config.max_steps) if config.max_steps else total


def _reopen(
    progress: _Progress,
    config: TrainConfig,
    changes: dict,
    step: int,
    total_steps: int,
) -> bool:
  """Reopens a finished run whose accepted changes let it go on.

  A finished run stays finished on an identical rerun; after a change of
  `epochs`, `max_steps`, `patience` or `time_limit_minutes` it goes on when
  no stop reason holds under the new values (this process's time is 0).
  """
  if not progress.finished or not changes:
    return False
  if _stop_reason(config, progress, step, total_steps, 0.0):
    return False
  progress.finished, progress.stop_reason = False, ""
  return True


def _config_json_fields(workdir: str) -> dict | None:
  """The configuration in `workdir/config.json`, or None if unreadable."""
  try:
    with open(os.path.join(workdir, workdir_layout.CONFIG_FILE)) as f:
      return json.load(f)["config"]
  except (OSError, ValueError, KeyError, TypeError):
    return None


def _damage_line(directory: str, damaged: list) -> str:
  return "; ".join(
      f"checkpoint {directory}/{d.step} is damaged "
      f"({d.reason}), moved to {d.moved_to}"
      for d in damaged
  )


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass


def _non_finite_message(
    config: TrainConfig,
    bad_step: int,
    steps_per_epoch: int,
    saved_step: int | None,
    restored_step: int,
) -> str:
  epoch, index = divmod(bad_step - 1, steps_per_epoch)
  cause = (
      f"--lr={config.lr:g} is probably too high for this model, or "
      "values overflow; try a lower --lr, --grad_clip or "
      "--warmup_steps"
  )
  if bad_step == restored_step + 1 and restored_step > 0:
    cause += (
        f", or the parameters restored from step {restored_step} are "
        "not finite"
    )
  kept = (
      f"checkpoint {saved_step} (the last good one) is kept"
      if saved_step is not None
      else "no checkpoint was written"
  )
  return (
      f"step {bad_step} (epoch {epoch + 1}, batch {index + 1}) gave a "
      f"non-finite loss or gradient (NaN or inf) and was not applied: "
      f"{cause}. Training stopped; {kept}, no results.json written"
  )


def _stop_reason(
    config: TrainConfig,
    progress: _Progress,
    step: int,
    total_steps: int,
    seconds: float,
) -> str:
  """Why training ends after this epoch ("" while it goes on)."""
  if progress.bad_epochs >= config.patience:
    return (
        f"early stopping: {config.patience} epochs without a better "
        f"{early_stop_metric(config)}"
    )
  if step == total_steps:
    return "max_steps" if total_steps == config.max_steps else "epochs"
  if config.time_limit_minutes and seconds >= 60 * config.time_limit_minutes:
    return f"time limit: {config.time_limit_minutes} minutes"
  return ""


def _initial_arrays(model, tx, rng, max_len):
  state = steps.create_train_state(model, tx, rng, max_len)
  return {"state": state, "best_params": state.params}


def _peak_rss_gib() -> float:
  """Peak resident memory of this process (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _mean(values):
  return float(np.mean(values)) if values else 0.0


def _protocol_description(config: TrainConfig) -> str:
  ranking = {
      "full": "full ranking over all items",
      "uni100": "sampled: target vs 100 uniform negatives",
      "pop100": "sampled: target vs 100 popularity negatives",
  }
  if config.eval_protocol == "full":
    history = (
        f"both protocols: user history kept (metric names as is) and "
        f"excluded (names ending in {metrics.HISTORY_EXCLUDED}), "
        f"{metrics.SEEN_AT_10} = seen items in the top 10 with the "
        f"history kept, {metrics.SEEN_INPUT_AT_10} = those of them in the "
        f"model's input; best epoch by {early_stop_metric(config)}"
    )
  else:
    history = "user history kept"
  return (
      f"{ranking[config.eval_protocol]}, leave-one-out, ties count "
      f"against the target, {history}"
  )
