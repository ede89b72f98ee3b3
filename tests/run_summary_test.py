"""Tests of the run header (`linrec_jax.training.run_summary`)."""

import dataclasses

from linrec_jax.training import config as config_lib
from linrec_jax.training import run_summary


def _evaluation_line(**fields):
  config = dataclasses.asdict(config_lib.TrainConfig(**fields))
  record = {"config": config, "flags": {}, "dataset": "ml-1m"}
  lines = run_summary.summary_lines(record, "runs/a")
  (line,) = [l for l in lines if l.startswith("evaluation: ")]
  return line


def test_full_ranking_names_both_protocols_and_the_early_stop_one():
  assert _evaluation_line() == (
      "evaluation: full ranking, history kept and excluded (early stop on "
      "history kept)"
  )
  assert _evaluation_line(exclude_history=True).endswith(
      "(early stop on history excluded)"
  )


def test_a_sampled_protocol_keeps_the_history():
  assert _evaluation_line(eval_protocol="uni100") == (
      "evaluation: uni100 ranking, history kept"
  )
