"""`linrec_jax.cli.hyperparameter_search`: two Optuna trials of the tiny preset, end to end."""

import csv
import json
import pathlib

import pytest

from linrec_jax.cli import hyperparameter_search as search

optuna = pytest.importorskip(
    "optuna",
    reason="Optuna is optional: pip install 'linrec_jax[search]' "
    "or -r requirements-search.txt (make test installs it)",
)

SAMPLE_FILE = "ml-1m-sample/ml-1m.txt"


# Two training trials end to end: slow.
@pytest.mark.slow
def test_two_trials_write_a_ranked_table(data_file, tmp_path):
  data_root = str(data_file(SAMPLE_FILE).parent.parent)
  workdir = tmp_path / "search"
  rows = search.search(
      workdir=str(workdir),
      trials=2,
      dataset="ml-1m-sample",
      preset="tiny",
      params=("lr", "dropout"),
      data_root=data_root,
      prepared_root=str(tmp_path / "prepared"),
      epochs=2,
      report=lambda line: None,
  )
  assert [row["trial"] for row in sorted(rows, key=lambda r: r["trial"])] == [
      0,
      1,
  ]
  with open(workdir / "trials.csv", newline="") as f:
    table = list(csv.DictReader(f))
  assert [r["trial"] for r in table] == [
      str(r["trial"])
      for r in sorted(rows, key=lambda r: -r["best_valid_ndcg@10"])
  ]
  values = [float(r["best_valid_ndcg@10"]) for r in table]
  assert values == sorted(values, reverse=True)
  for row in table:
    assert row["state"] in ("complete", "pruned"), row
    assert "lr=" in row["params"] and "dropout=" in row["params"]
    trial_dir = pathlib.Path(row["workdir"])
    config = json.loads((trial_dir / "config.json").read_text())["config"]
    assert config["hidden"] == 16 and config["epochs"] == 2
    if row["state"] == "complete":
      results = json.loads((trial_dir / "results.json").read_text())
      assert float(row["best_valid_ndcg@10"]) == pytest.approx(
          results["valid"]["ndcg@10"]
      )
      assert float(row["test_ndcg@10"]) == pytest.approx(
          results["test"]["ndcg@10"]
      )
  # The first trial has nothing to be compared with: never pruned.
  assert next(r for r in rows if r["trial"] == 0)["state"] == "complete"
  markdown = (workdir / "trials.md").read_text().splitlines()
  assert markdown[0].startswith("| trial | state | params |")
  assert len(markdown) == 2 + 2


def test_unknown_parameter_is_named(tmp_path):
  with pytest.raises(ValueError, match="^--params: unknown width"):
    search.search(workdir=str(tmp_path), trials=1, params=("width",))
