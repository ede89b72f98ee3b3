"""Progress lines, config.json, per-epoch JSON lines, TensorBoard events and
results.json."""

import json
import os
import time
from typing import Callable

try:
  from tensorboardX import SummaryWriter
except ImportError:  # An optional dependency: the JSON files carry the same.
  SummaryWriter = None

HEADLINE = ("hit@10", "ndcg@10", "mrr@10")
# The same with the user's history excluded from the ranking, and how many
# already-seen items the ranking that keeps it puts in the top 10.
HEADLINE_EXCLUDED = ("hit@10_nohist", "ndcg@10_nohist", "mrr@10_nohist",
                     "seen@10")
# What a run leaves in its workdir (read back by `run_comparison`).
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"


def format_metrics(metrics: dict[str, float],
                   names: tuple[str, ...] = HEADLINE) -> str:
  return "  ".join(f"{name} {metrics[name]:.4f}" for name in names)


def format_headline(metrics: dict[str, float]) -> str:
  """The headline metrics, history kept, then excluded when present."""
  line = format_metrics(metrics)
  if all(name in metrics for name in HEADLINE_EXCLUDED):
    line += " | " + format_metrics(metrics, HEADLINE_EXCLUDED)
  return line


class Reporter:
  """Writes what a run does to the console and to files in its workdir.

  Only the reporter of process 0 is `enabled`; the others stay silent so
  that a multi-host run writes every file once.
  """

  def __init__(self, workdir: str, *, total_steps: int,
               report: Callable[[str], None], enabled: bool = True):
    self._workdir = workdir
    self._total_steps = total_steps
    self._report = report if enabled else (lambda line: None)
    self._enabled = enabled
    self._writer = None
    self._last = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      if SummaryWriter is None:
        report("tensorboardX is not installed: no TensorBoard events "
               "(metrics.jsonl and results.json are written)")
      else:
        self._writer = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def line(self, text: str) -> None:
    """One line for the console."""
    self._report(text)

  def config(self, record: dict) -> None:
    """Writes `config.json`: the run's configuration and what it ran on."""
    if self._enabled:
      _write_atomic(os.path.join(self._workdir, "config.json"),
                    json.dumps(record, indent=2, sort_keys=True))

  def step(self, step: int, train_loss: float) -> None:
    """A periodic line: step, loss, steps per second, time left."""
    now = time.perf_counter()
    if self._last is not None and step > self._last[0]:
      rate = (step - self._last[0]) / (now - self._last[1])
      left = (self._total_steps - step) / rate
      self._report(f"step {step}/{self._total_steps}  loss {train_loss:.4f}"
                   f"  {rate:.2f} steps/s  ~{_duration(left)} left")
    else:
      self._report(f"step {step}/{self._total_steps}  loss {train_loss:.4f}")
    self._last = (step, now)
    if self._writer:
      self._writer.add_scalar("train/loss", train_loss, step)

  def epoch(self, record: dict, history: list[dict]) -> None:
    """One epoch's record: console, TensorBoard, and `metrics.jsonl`.

    `metrics.jsonl` is rewritten from `history` (all epochs so far, `record`
    last), so an epoch repeated after a crash appears once.
    """
    line = (f"epoch {record['epoch']}  step {record['step']}  "
            f"loss {record['train_loss']:.4f}  {record['seconds']:.1f} s")
    if "valid" in record:
      line += "  valid " + format_headline(record["valid"])
    self._report(line)
    if not self._enabled:
      return
    _write_atomic(os.path.join(self._workdir, METRICS_FILE),
                  "".join(json.dumps(r) + "\n" for r in history))
    if self._writer:
      self._write_epoch_events(record)

  def _write_epoch_events(self, record: dict) -> None:
    step = record["step"]
    self._writer.add_scalar("epoch/train_loss", record["train_loss"], step)
    self._writer.add_scalar("epoch/seconds", record["seconds"], step)
    for name, value in record.get("valid", {}).items():
      self._writer.add_scalar(f"valid/{name}", value, step)
    self._writer.flush()

  def results(self, results: dict) -> None:
    """Writes `results.json` atomically and prints the test metrics."""
    self._report(f"protocol: {results['eval_protocol']}")
    self._report(f"best epoch {results['best_epoch']} of "
                 f"{results['epochs_run']}")
    for stage in ("valid", "test"):
      names = tuple(sorted(results[stage], key=_metric_order))
      self._report(f"{stage}: " + format_metrics(results[stage], names))
    if not self._enabled:
      return
    _write_atomic(os.path.join(self._workdir, RESULTS_FILE),
                  json.dumps(results, indent=2, sort_keys=True))
    if self._writer:
      self._writer.close()


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _write_atomic(path: str, text: str) -> None:
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def _metric_order(name: str) -> tuple[bool, str, int]:
  """Sorts history-kept metrics first, each group by name then cut-off."""
  metric, _, cutoff = name.partition("@")
  k, _, suffix = cutoff.partition("_")
  return bool(suffix), metric, int(k or 0)
