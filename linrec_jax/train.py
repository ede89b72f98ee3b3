"""The training loop: `train_and_evaluate(config, data_dir, workdir)`.

Every step is a pure function of (state, batch, rng): the batch of global
step s is `epoch = s // steps_per_epoch, index = s % steps_per_epoch` of a
loader seeded by the config, and the step's randomness is `fold_in(rng, s)`.
So a run that is killed and resumed from its last checkpoint retraces exactly
the steps of an uninterrupted run and ends with the same metrics.
"""

import dataclasses
import os
import resource
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from linrec_jax import checkpointing
from linrec_jax import data
from linrec_jax import metrics
from linrec_jax import models
from linrec_jax import optimizer
from linrec_jax import sharding
from linrec_jax import steps
from linrec_jax.config import TrainConfig
from linrec_jax.evaluation import Evaluator
from linrec_jax.reporting import Reporter

KS = (5, 10, 20)


def early_stop_metric(config: TrainConfig) -> str:
  """The validation metric that selects the best epoch: NDCG@10, history
  kept (RecBole's protocol), or excluded with `--exclude_history`."""
  if config.exclude_history and config.eval_protocol == "full":
    return "ndcg@10" + metrics.HISTORY_EXCLUDED
  return "ndcg@10"


def make_model(config: TrainConfig, num_items: int):
  """The linen model a configuration describes."""
  fields = dict(num_items=num_items, max_len=config.max_len,
                hidden=config.hidden, layers=config.layers,
                heads=config.heads, ffn=config.ffn, dropout=config.dropout,
                attention_dropout=config.attention_dropout,
                attention=config.attention, mask_padding=config.mask_padding,
                pre_ln=config.pre_ln)
  if config.model == "sasrec":
    fields["causal"] = config.causal
  return models.MODELS[config.model](**fields)


def _mask_token(model) -> int | None:
  return getattr(model, "mask_token", None)


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


def train_and_evaluate(config: TrainConfig, data_dir: str, workdir: str, *,
                       report: Callable[[str], None] = print,
                       run_info: dict | None = None) -> dict:
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

  Returns:
    The content of `results.json`.
  """
  start_time = time.perf_counter()
  seqs = data.load(data_dir)
  model = make_model(config, seqs.num_items)
  devices = sharding.select_devices(config.devices)
  sharding.check_divisible(config.batch_size, len(devices), "batch_size")
  if (config.batch_size // len(devices)) % config.microbatches:
    raise ValueError(
        f"--microbatches={config.microbatches} does not divide the "
        f"{config.batch_size // len(devices)} rows per device of "
        f"--batch_size={config.batch_size}")
  sharding.check_divisible(config.eval_batch_size, len(devices),
                           "eval_batch_size")
  shard = (jax.process_index(), jax.process_count())
  loader = data.TrainBatches(
      seqs, mode=config.train_mode, max_len=config.max_len,
      batch_size=config.batch_size, seed=config.seed,
      pad_side=config.pad_side, windows_per_user=config.windows_per_user,
      mask_prob=config.mask_prob, mask_token=_mask_token(model),
      max_predictions=config.max_predictions or None,
      mask_last_prob=config.mask_last_prob,
      length_bucket=config.length_bucket)
  steps_per_epoch = loader.num_batches
  if steps_per_epoch == 0:
    raise ValueError(f"--batch_size={config.batch_size} exceeds the "
                     f"{loader.num_examples} training examples of an epoch")
  total_steps = config.epochs * steps_per_epoch
  if config.max_steps:
    total_steps = min(total_steps, config.max_steps)
  tx = optimizer.make_optimizer(
      lr=config.lr, schedule=config.lr_schedule,
      warmup_steps=config.warmup_steps, total_steps=total_steps,
      weight_decay=config.weight_decay, grad_clip=config.grad_clip)
  launcher = sharding.make_launcher(
      config.parallel, devices, model, tx, loss=config.loss,
      num_items=seqs.num_items, num_negatives=config.num_negatives,
      protocol=config.eval_protocol, ks=KS, microbatches=config.microbatches)
  evaluators = {
      stage: Evaluator(launcher, seqs, stage=stage,
                       protocol=config.eval_protocol, max_len=config.max_len,
                       batch_size=config.eval_batch_size,
                       pad_side=config.pad_side, mask_token=_mask_token(model),
                       seed=config.seed + 1)
      for stage in ("valid", "test")}

  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  init = lambda: _initial_arrays(model, tx, init_rng, config.max_len)
  checkpointer = checkpointing.Checkpointer(
      os.path.join(workdir, "checkpoints"),
      max_to_keep=config.keep_checkpoints)
  restored = checkpointer.restore_latest(jax.eval_shape(init))
  if restored is None:
    arrays, progress = jax.device_get(init()), _Progress()
  else:
    arrays, meta = restored
    progress = _Progress(**meta["progress"])
  reporter = Reporter(workdir, total_steps=total_steps, report=report,
                      enabled=jax.process_index() == 0)
  reporter.config({**(run_info or {}), "data_dir": os.path.abspath(data_dir),
                   "config": dataclasses.asdict(config)})
  if restored is not None:
    reporter.line(f"resumed from step {int(arrays['state'].step)} "
                  f"({checkpointer.directory})")
  state = launcher.put_state(arrays["state"])
  best_params = arrays["best_params"]
  rng = launcher.put_replicated(train_rng)

  def save(step: int):
    host = {"state": launcher.get_state(state), "best_params": best_params}
    checkpointer.save(step, host, {"progress": dataclasses.asdict(progress)})

  def fold_running_loss():
    nonlocal loss_sum, loss_steps
    progress.epoch_loss_sum += float(loss_sum)
    progress.epoch_loss_steps += loss_steps
    loss_sum, loss_steps = jnp.zeros(()), 0

  step = int(jax.device_get(launcher.get_state(state.step)))
  epoch_start = time.perf_counter() - progress.epoch_seconds
  loss_sum, loss_steps = jnp.zeros(()), 0
  while step < total_steps and not progress.finished:
    epoch, index = divmod(step, steps_per_epoch)
    batch = loader.batch(epoch, index, shard=shard)
    state, step_metrics = launcher.train_step(state, launcher.put_batch(batch),
                                              rng)
    loss_sum = loss_sum + launcher.unreplicate(step_metrics["loss"])
    loss_steps += 1
    step += 1
    if step % config.log_every_steps == 0:
      mean_loss = ((progress.epoch_loss_sum + float(loss_sum)) /
                   (progress.epoch_loss_steps + loss_steps))
      reporter.step(step, mean_loss)
    if step % steps_per_epoch == 0 or step == total_steps:
      fold_running_loss()
      record = {"epoch": epoch + 1, "step": step,
                "seconds": time.perf_counter() - epoch_start,
                "train_loss": progress.epoch_loss_sum /
                              max(progress.epoch_loss_steps, 1)}
      if (epoch + 1) % config.eval_every_epochs == 0 or step == total_steps:
        record["valid"] = evaluators["valid"](state.params)
        if record["valid"][early_stop_metric(config)] > progress.best_metric:
          progress.best_metric = record["valid"][early_stop_metric(config)]
          progress.best_epoch = epoch + 1
          progress.bad_epochs = 0
          best_params = launcher.get_state(state).params
        else:
          progress.bad_epochs += 1
      progress.history.append(record)
      reporter.epoch(record, progress.history)
      progress.stop_reason = _stop_reason(config, progress, step, total_steps,
                                          time.perf_counter() - start_time)
      progress.finished = bool(progress.stop_reason)
      progress.epoch_loss_sum, progress.epoch_loss_steps = 0.0, 0
      progress.epoch_seconds = 0.0
      save(step)
      epoch_start = time.perf_counter()
    elif step % config.checkpoint_every_steps == 0:
      fold_running_loss()
      progress.epoch_seconds = time.perf_counter() - epoch_start
      save(step)

  checkpointer.close()
  best = launcher.put_state(best_params)
  results = {
      "config": dataclasses.asdict(config),
      "eval_protocol": _protocol_description(config),
      "valid": evaluators["valid"](best),
      "test": evaluators["test"](best),
      "best_epoch": progress.best_epoch,
      "epochs_run": len(progress.history),
      "stop_reason": progress.stop_reason,
      "steps": step,
      "steps_per_epoch": steps_per_epoch,
      "seconds_per_epoch": _mean([r["seconds"] for r in progress.history]),
      "devices": f"{len(devices)} x {devices[0].device_kind}",
      # This process only: a resumed run counts from its last start.
      "wall_seconds_this_process": time.perf_counter() - start_time,
      "peak_rss_gib_this_process": _peak_rss_gib(),
      "data": {"dir": os.path.abspath(data_dir), "meta": seqs.meta},
  }
  reporter.results(results)
  return results


def _stop_reason(config: TrainConfig, progress: _Progress, step: int,
                 total_steps: int, seconds: float) -> str:
  """Why training ends after this epoch ("" while it goes on)."""
  if progress.bad_epochs >= config.patience:
    return (f"early stopping: {config.patience} epochs without a better "
            f"{early_stop_metric(config)}")
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
  ranking = {"full": "full ranking over all items",
             "uni100": "sampled: target vs 100 uniform negatives",
             "pop100": "sampled: target vs 100 popularity negatives"}
  if config.eval_protocol == "full":
    history = (f"both protocols: user history kept (metric names as is) and "
               f"excluded (names ending in {metrics.HISTORY_EXCLUDED}), "
               f"{metrics.SEEN_AT_10} = seen items in the top 10 with the "
               f"history kept; best epoch by {early_stop_metric(config)}")
  else:
    history = "user history kept"
  return (f"{ranking[config.eval_protocol]}, leave-one-out, ties count "
          f"against the target, {history}")
