"""Progress lines, console.log, config.json, per-epoch JSON lines,
TensorBoard events, the learning-curve plot and results.json."""

import datetime
import importlib.util
import json
import os
import time
from typing import Callable

from linrec_jax import workdir as workdir_layout
from linrec_jax.analysis import learning_curve
from linrec_jax.training import progress as progress_lib
from linrec_jax.training import run_summary

try:
  from tensorboardX import SummaryWriter
except ImportError:  # An optional dependency: the JSON files carry the same.
  SummaryWriter = None

HEADLINE = ("hit@10", "ndcg@10", "mrr@10")
# The same with the user's history excluded from the ranking, and how many
# already-seen items the ranking that keeps it puts in the top 10.
HEADLINE_EXCLUDED = (
    "hit@10_nohist",
    "ndcg@10_nohist",
    "mrr@10_nohist",
    "seen@10",
)


def format_metrics(
    metrics: dict[str, float], names: tuple[str, ...] = HEADLINE
) -> str:
  return "  ".join(f"{name} {metrics[name]:.4f}" for name in names)


# Seen items of the top 10 that are in the model's input (runs from before
# it was measured lack it).
SEEN_INPUT = "seen_input@10"


def format_headline(metrics: dict[str, float]) -> str:
  """The headline metrics, history kept, then excluded when present."""
  line = format_metrics(metrics)
  if all(name in metrics for name in HEADLINE_EXCLUDED):
    line += " | " + format_metrics(metrics, HEADLINE_EXCLUDED)
    if SEEN_INPUT in metrics:
      line += "  " + format_metrics(metrics, (SEEN_INPUT,))
  return line


class Reporter:
  """Writes what a run does to the console and to files in its workdir.

  Every console line also goes to `workdir/console.log` (appended, so a
  resumed run adds to it). Only the reporter of process 0 is `enabled`;
  the others stay silent so that a multi-host run writes every file once.
  """

  def __init__(
      self,
      workdir: str,
      *,
      total_steps: int,
      report: Callable[[str], None],
      enabled: bool = True,
      steps_per_epoch: int | None = None,
      learning_rate: Callable[[int], float] | None = None,
      on_epoch: Callable[[dict], None] | None = None,
  ):
    """Opens the files of `workdir`.

    Args:
      workdir: the run's directory.
      total_steps: the steps of the whole run.
      report: receives every console line.
      enabled: False on every process but the first.
      steps_per_epoch: for `epoch k/N` and the time left (default: one epoch).
      learning_rate: the schedule, step -> rate, logged to TensorBoard.
      on_epoch: called with each epoch's record (e.g. a search that prunes
        a trial by raising).
    """
    self._workdir = workdir
    self._total_steps = total_steps
    self._enabled = enabled
    self._user_report = report if enabled else (lambda line: None)
    self._learning_rate = learning_rate
    self._on_epoch = on_epoch
    self._writer = None
    self._console = None
    self._config = {}
    self._announced_validation = False
    self._steps_per_epoch = steps_per_epoch or total_steps
    self._progress = progress_lib.Progress(
        total_steps=total_steps,
        steps_per_epoch=self._steps_per_epoch,
        enabled=enabled,
    )
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self._console = open(
          os.path.join(workdir, workdir_layout.CONSOLE_FILE),
          "a",
          encoding="utf-8",
      )
      self._console.write(f"--- {datetime.datetime.now().isoformat()} ---\n")
      if SummaryWriter is None:
        self.line(
            "tensorboardX is not installed: no TensorBoard events "
            "(metrics.jsonl and results.json are written; pip install "
            "'linrec_jax[tensorboard]')"
        )
      else:
        self._writer = SummaryWriter(
            os.path.join(workdir, workdir_layout.TENSORBOARD_DIR)
        )

  def line(self, text: str) -> None:
    """One line for the console (and console.log)."""
    if self._console:
      self._console.write(text + "\n")
      self._console.flush()
    self._progress.write(self._user_report, text)

  def config(self, record: dict) -> None:
    """Writes `config.json` and prints a short summary of the run."""
    self._config = record.get("config", {})
    self._progress = progress_lib.Progress(
        total_steps=self._total_steps,
        steps_per_epoch=self._steps_per_epoch,
        eval_every_epochs=self._config.get("eval_every_epochs", 1),
        enabled=self._enabled,
    )
    if not self._enabled:
      return
    _write_atomic(
        os.path.join(self._workdir, workdir_layout.CONFIG_FILE),
        json.dumps(record, indent=2, sort_keys=True),
    )
    for text in run_summary.summary_lines(
        record, os.path.abspath(self._workdir)
    ):
      self.line(text)

  def start_training(self, step: int) -> None:
    """Training (re)starts at `step`: says what the first step waits for."""
    if step >= self._total_steps:
      return
    self.line(run_summary.loss_definition(self._config))
    self.line(
        f"compiling the training step (XLA): step {step + 1} of "
        f"{self._total_steps} waits for it, then epoch "
        f"{self._progress.epoch_of(step)}/{self._progress.epochs()} "
        "runs"
    )
    self._progress.start(step)

  def advance(self, step: int) -> None:
    """Step `step` has finished (every step: the bar and the time left)."""
    self._progress.advance(step)
    if self._progress.is_epoch_end(step) and not self._announced_validation:
      self._announced_validation = True
      self.line(
          f"validating after epoch {self._progress.epoch_of(step - 1)} "
          "(the first validation also compiles the scoring step)"
      )

  def step(self, step: int, train_loss: float) -> None:
    """A periodic line: step, epoch, loss, steps per second, time left."""
    self._progress.advance_loss(train_loss)
    epoch = self._progress.epoch_of(step - 1)
    rate = self._progress.steps_per_second()
    text = (
        f"step {step}/{self._total_steps}  epoch {epoch}/"
        f"{self._progress.epochs()}  train loss {train_loss:.4f}"
    )
    if rate:
      text += f"  {rate:.2f} steps/s  {self._progress.describe_left(step)}"
    self._line_unless_bar(text)
    if self._writer:
      self._writer.add_scalar("train/loss", train_loss, step)
      if self._learning_rate is not None:
        self._writer.add_scalar(
            "train/learning_rate", float(self._learning_rate(step)), step
        )

  def _line_unless_bar(self, text: str) -> None:
    """console.log always; the console only when no bar shows the same."""
    if self._progress.showing_bar():
      if self._console:
        self._console.write(text + "\n")
        self._console.flush()
    else:
      self.line(text)

  def epoch(self, record: dict, history: list[dict]) -> None:
    """One epoch's record: console, TensorBoard, and `metrics.jsonl`.

    `metrics.jsonl` is rewritten from `history` (all epochs so far, `record`
    last), so an epoch repeated after a crash appears once.
    """
    line = (
        f"epoch {record['epoch']} of {self._progress.epochs()} done  "
        f"step {record['step']}  train loss {record['train_loss']:.4f}  "
        f"{record['seconds']:.1f} s"
    )
    if "valid" in record:
      line += "  valid " + format_headline(record["valid"])
    self.line(line)
    self._progress.epoch_done()
    if self._enabled:
      _write_atomic(
          os.path.join(self._workdir, workdir_layout.METRICS_FILE),
          "".join(json.dumps(r) + "\n" for r in history),
      )
      if self._writer:
        self._write_epoch_events(record)
    if self._on_epoch is not None:
      try:
        self._on_epoch(record)
      except BaseException:
        self.close()  # the run ends here (e.g. a pruned search trial)
        raise

  def _write_epoch_events(self, record: dict) -> None:
    step = record["step"]
    self._writer.add_scalar("epoch/train_loss", record["train_loss"], step)
    self._writer.add_scalar("epoch/seconds", record["seconds"], step)
    if self._learning_rate is not None:
      self._writer.add_scalar(
          "epoch/learning_rate", float(self._learning_rate(step)), step
      )
    valid = learning_curve.numeric_metrics(record.get("valid", {}))
    for name, value in valid.items():
      self._writer.add_scalar(f"valid/{name}", value, step)
    self._writer.flush()

  def results(self, results: dict) -> None:
    """Writes `results.json`, the learning curve and the final events;
    prints where they are, then the validation and test metrics."""
    self._progress.close()
    self.line(f"protocol: {results['eval_protocol']}")
    stop = results.get("stop_reason")
    self.line(
        f"best epoch {results['best_epoch']} of "
        f"{results['epochs_run']}" + (f" (stopped: {stop})" if stop else "")
    )
    if self._enabled:
      _write_atomic(
          os.path.join(self._workdir, workdir_layout.RESULTS_FILE),
          json.dumps(results, indent=2, sort_keys=True),
      )
      self._draw_curve(results)
      if self._writer:
        self._write_final_events(results)
        self._writer.flush()
      self.line(self._outputs_line())
    for stage in ("valid", "test"):
      flat = learning_curve.numeric_metrics(results[stage])
      names = tuple(sorted(flat, key=_metric_order))
      self.line(f"{stage}: " + format_metrics(flat, names))
    self.close()

  def close(self) -> None:
    """Closes the bar, console.log and the event writer (idempotent)."""
    self._progress.close()
    if self._console:
      self._console.close()
      self._console = None
    if self._writer:
      self._writer.close()
      self._writer = None

  def _outputs_line(self) -> str:
    workdir = os.path.abspath(self._workdir)
    parts = [
        f"results: {os.path.join(workdir, workdir_layout.RESULTS_FILE)}",
        f"console: {os.path.join(workdir, workdir_layout.CONSOLE_FILE)}",
    ]
    if os.path.exists(os.path.join(workdir, workdir_layout.CURVE_FILE)):
      parts.append(f"curve: {os.path.join(workdir, workdir_layout.CURVE_FILE)}")
    if self._writer:
      parts.append(
          f"tensorboard --logdir {os.path.join(workdir, workdir_layout.TENSORBOARD_DIR)}"
      )
    return "wrote " + "; ".join(parts)

  def _draw_curve(self, results: dict) -> None:
    history = _read_history(
        os.path.join(self._workdir, workdir_layout.METRICS_FILE)
    )
    if not history:
      return
    if importlib.util.find_spec("matplotlib") is None:
      self.line("matplotlib is not installed: no learning_curve.png")
      return
    config = results.get("config", {})
    title = (
        f"{os.path.basename(os.path.abspath(self._workdir))}: "
        f"{config.get('model', '?')} / {config.get('attention', '?')}, "
        f"test "
        + format_metrics(
            learning_curve.numeric_metrics(results["test"]),
            tuple(n for n in HEADLINE if n in results["test"]),
        )
    )
    learning_curve.plot(
        history,
        os.path.join(self._workdir, workdir_layout.CURVE_FILE),
        title=title,
        best_epoch=results.get("best_epoch"),
    )

  def _write_final_events(self, results: dict) -> None:
    step = results.get("steps", 0)
    metrics = {}
    for stage in ("valid", "test"):
      for name, value in learning_curve.numeric_metrics(results[stage]).items():
        self._writer.add_scalar(f"{stage}_best/{name}", value, step)
        metrics[f"hparams/{stage}/{name}"] = value
    hparams = {
        name: value
        for name, value in results.get("config", {}).items()
        if isinstance(value, (bool, int, float, str))
    }
    self._writer.add_hparams(hparams, metrics, name="hparams", global_step=step)


def _read_history(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _write_atomic(path: str, text: str) -> None:
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def _metric_order(name: str) -> tuple[bool, str, int]:
  """Sorts history-kept metrics first, each group by name then cut-off."""
  metric, _, cutoff = name.partition("@")
  digits = cutoff[: len(cutoff) - len(cutoff.lstrip("0123456789"))]
  suffix = cutoff[len(digits) :]
  return bool(suffix), metric + suffix, int(digits or 0)
