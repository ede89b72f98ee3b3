"""What a run leaves for TensorBoard, the learning curve and console.log.

Event files are read back with a short TFRecord reader (length, CRC, Event
proto, CRC) and tensorboardX's Event proto, independent of the writer.
"""

import pathlib
import struct

import pytest

from linrec_jax.analysis import learning_curve
from linrec_jax.training import reporting

tensorboardX = pytest.importorskip("tensorboardX")
from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top,wrong-import-position

# Two metric sets: the nested one and the suffixed one stand for a second
# evaluation protocol; every numeric leaf must be logged.
VALID = {
    "hit@10": 0.5,
    "ndcg@10": 0.25,
    "mrr@10": 0.125,
    "ndcg@10_nohist": 0.3,
    "nohist": {"ndcg@10": 0.35},
}
TEST = {"hit@10": 0.4, "ndcg@10": 0.2, "mrr@10": 0.1, "ndcg@10_nohist": 0.22}
CONFIG = {
    "model": "sasrec",
    "attention": "linrec",
    "lr": 0.01,
    "causal": True,
    "eval_every_epochs": 1,
    "loss": "ce",
}


def _events(directory: pathlib.Path) -> list:
  events = []
  for path in sorted(directory.rglob("events.out.tfevents.*")):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset : offset + 8])
      payload = data[offset + 12 : offset + 12 + length]
      offset += 12 + length + 4
      event = event_pb2.Event()
      event.ParseFromString(payload)
      events.append((path.parent.name, event))
  return events


def _scalars(events) -> dict[str, list[tuple[int, float]]]:
  found = {}
  for _, event in events:
    for value in event.summary.value:
      if value.HasField("simple_value"):
        found.setdefault(value.tag, []).append((event.step, value.simple_value))
  return found


@pytest.fixture(name="workdir")
def _workdir(tmp_path):
  lines = []
  # A schedule with known values: 0.001 * step.
  reporter = reporting.Reporter(
      str(tmp_path),
      total_steps=4,
      report=lines.append,
      steps_per_epoch=2,
      learning_rate=lambda step: 0.001 * step,
  )
  reporter.config(
      {
          "dataset": "toy",
          "preset": "tiny",
          "config": CONFIG,
          "flags": {"lr": 0.01},
          "data_dir": "/data/toy",
      }
  )
  reporter.start_training(0)
  history = []
  for step in range(1, 5):
    reporter.advance(step)
    reporter.step(step, 5.0 - step)
    if step % 2 == 0:
      history.append(
          {
              "epoch": step // 2,
              "step": step,
              "seconds": 1.0,
              "train_loss": 5.0 - step,
              "valid": VALID,
          }
      )
      reporter.epoch(history[-1], history)
  reporter.results(
      {
          "eval_protocol": "full",
          "best_epoch": 2,
          "epochs_run": 2,
          "valid": VALID,
          "test": TEST,
          "steps": 4,
          "config": CONFIG,
      }
  )
  return tmp_path, lines


def test_learning_rate_validation_and_test_metrics_are_logged(workdir):
  path, _ = workdir
  # TensorBoard tags keep [A-Za-z0-9_./-]: tensorboardX writes "@" as "_".
  scalars = {
      tag.replace("_10", "@10"): points
      for tag, points in _scalars(_events(path / "tensorboard")).items()
  }
  assert scalars["train/learning_rate"] == [
      (s, pytest.approx(0.001 * s)) for s in (1, 2, 3, 4)
  ]
  assert scalars["train/loss"] == [(1, 4.0), (2, 3.0), (3, 2.0), (4, 1.0)]
  assert scalars["valid/ndcg@10"] == [(2, 0.25), (4, 0.25)]
  assert scalars["valid/ndcg@10_nohist"] == [
      (2, pytest.approx(0.3)),
      (4, pytest.approx(0.3)),
  ]
  assert scalars["valid/nohist/ndcg@10"] == [
      (2, pytest.approx(0.35)),
      (4, pytest.approx(0.35)),
  ]
  assert scalars["test_best/ndcg@10"] == [(4, pytest.approx(0.2))]
  assert scalars["test_best/ndcg@10_nohist"] == [(4, pytest.approx(0.22))]


def test_hyperparameters_are_logged_with_the_final_metrics(workdir):
  path, _ = workdir
  events = _events(path / "tensorboard")
  plugin_tags = {
      value.tag
      for _, event in events
      for value in event.summary.value
      if value.metadata.plugin_data.plugin_name == "hparams"
  }
  assert "_hparams_/session_start_info" in plugin_tags
  scalars = _scalars(events)
  assert scalars["hparams/test/ndcg_10"] == [(4, pytest.approx(0.2))]
  start = next(
      value.metadata.plugin_data.content
      for _, event in events
      for value in event.summary.value
      if value.tag == "_hparams_/session_start_info"
  )
  assert b"attention" in start and b"linrec" in start


def test_console_log_and_learning_curve(workdir):
  path, lines = workdir
  log = (path / "console.log").read_text()
  for line in lines:
    assert line in log
  assert lines[-1].startswith("test: ")
  assert any(line.startswith("train loss: the running mean") for line in lines)
  assert any("compiling the training step" in line for line in lines)
  assert any(f"{path}/results.json" in line for line in lines)
  assert any(line.startswith(f"workdir: {path}") for line in lines)
  png = (path / "learning_curve.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_numeric_metrics_flattens_every_numeric_leaf():
  flat = learning_curve.numeric_metrics(
      {"a@10": 1, "b": {"c@5": 0.5, "note": "x", "flag": True}, "d": "e"}
  )
  assert flat == {"a@10": 1.0, "b/c@5": 0.5}
  # Both protocols share a panel; history excluded is labelled.
  assert learning_curve.panel_of("ndcg@10") == ("ndcg", "@10")
  assert learning_curve.panel_of("ndcg@10_nohist") == ("ndcg", "@10 excluded")
  assert learning_curve.panel_of("nohist/mrr@20") == ("nohist/mrr", "@20")
  assert learning_curve.panel_of("auc") == ("auc", "auc")
