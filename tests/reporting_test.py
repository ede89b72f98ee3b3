"""Tests of `linrec_jax.training.reporting` (the files a run writes)."""

import json

from linrec_jax import metrics
from linrec_jax.training import reporting

METRICS = {"hit@10": 0.5, "ndcg@10": 0.25, "mrr@10": 0.125}


def _run(workdir, lines):
  reporter = reporting.Reporter(
      str(workdir), total_steps=4, report=lines.append
  )
  history = []
  for epoch in (1, 2):
    history.append(
        {
            "epoch": epoch,
            "step": 2 * epoch,
            "seconds": 1.0,
            "train_loss": 3.0 / epoch,
            "valid": METRICS,
        }
    )
    reporter.epoch(history[-1], history)
  reporter.results(
      {
          "eval_protocol": "full",
          "best_epoch": 2,
          "epochs_run": 2,
          "valid": METRICS,
          "test": METRICS,
      }
  )
  return history


def test_files_hold_every_epoch_and_the_results(tmp_path):
  lines = []
  history = _run(tmp_path, lines)
  records = [
      json.loads(line)
      for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
  ]
  assert records == history
  assert json.loads((tmp_path / "results.json").read_text())["test"] == METRICS
  assert lines[-1].startswith("test: hit@10 0.5000")
  if reporting.SummaryWriter is not None:
    assert list((tmp_path / "tensorboard").iterdir())


def test_runs_without_tensorboardx(tmp_path, monkeypatch):
  monkeypatch.setattr(reporting, "SummaryWriter", None)
  lines = []
  history = _run(tmp_path, lines)
  assert not (tmp_path / "tensorboard").exists()
  assert any("tensorboardX is not installed" in line for line in lines)
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == len(
      history
  )
  assert (tmp_path / "results.json").is_file()


def test_headline_names_are_the_metrics_names():
  # reporting spells the names out (it stays free of JAX for compare_runs);
  # they must be the ones the evaluation writes.
  assert reporting.HEADLINE_EXCLUDED[-1] == metrics.SEEN_AT_10
  assert reporting.SEEN_INPUT == metrics.SEEN_INPUT_AT_10
  assert all(
      name.endswith(metrics.HISTORY_EXCLUDED)
      for name in reporting.HEADLINE_EXCLUDED[:-1]
  )
