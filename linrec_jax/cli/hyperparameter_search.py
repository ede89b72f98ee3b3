"""Hyperparameter search with Optuna over `train.train_and_evaluate`.

Each trial is one ordinary training run in `workdir/trial_NNN` (so it can be
inspected, compared with `experiments.compare_runs`, or resumed). After
every validation the trial reports validation NDCG@10 to Optuna, whose
median pruner stops trials that fall behind the median of earlier trials at
the same epoch. The objective is the best validation NDCG@10 (the test items
are never used to choose). `workdir/trials.csv` and `workdir/trials.md` hold
one row per trial.

  linrec-search --dataset=ml-1m --preset=cpu --trials=20 --workdir=runs/s

Optuna is optional: `pip install 'linrec_jax[search]'` (or
requirements-search.txt).
"""

import csv
import math
import os
from typing import Callable

from linrec_jax.cli import quickstart

OBJECTIVE = "ndcg@10"
# name -> (kind, low, high): the documented search space.
SPACE = {
    "lr": ("log", 1e-4, 1e-2),
    "dropout": ("float", 0.0, 0.5),
    "weight_decay": ("log0", 1e-6, 1e-1),  # 0 half of the time
    "warmup_steps": ("int", 0, 500),
}
DEFAULT_PARAMS = ("lr", "dropout")
TABLE_COLUMNS = (
    "trial",
    "state",
    "params",
    "best_valid_" + OBJECTIVE,
    "epochs_run",
    "test_" + OBJECTIVE,
    "workdir",
)


def _suggest(trial, name: str):
  kind, low, high = SPACE[name]
  if kind == "log":
    return trial.suggest_float(name, low, high, log=True)
  if kind == "float":
    return trial.suggest_float(name, low, high)
  if kind == "int":
    return trial.suggest_int(name, low, high)
  if not trial.suggest_categorical(f"{name}_on", [False, True]):
    return 0.0
  return trial.suggest_float(name, low, high, log=True)


def search(
    *,
    workdir: str,
    trials: int,
    dataset: str = "ml-1m",
    model: str = "sasrec",
    attention: str = "linrec",
    preset: str = "cpu",
    params: tuple[str, ...] = DEFAULT_PARAMS,
    seed: int = 0,
    data_root: str | None = None,
    prepared_root: str = "prepared",
    report: Callable[[str], None] = print,
    **fixed,
) -> list[dict]:
  """Runs `trials` trials; returns the rows of `workdir/trials.csv`.

  Args:
    workdir: one subdirectory per trial, and the tables.
    trials: how many trials.
    dataset, model, attention, preset, data_root, prepared_root: as
      `linrec_jax.run`.
    params: the names of `SPACE` to search; the others stay at the preset.
    seed: the sampler's seed.
    report: receives the console lines.
    **fixed: `TrainConfig` fields set in every trial (e.g. epochs=5).

  Raises:
    ImportError: naming the extra to install when Optuna is absent.
    ValueError: naming an unknown parameter or a bad fixed field.
  """
  try:
    import optuna  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ImportError(
        "the search needs Optuna: pip install "
        "'linrec_jax[search]' (or -r requirements-search.txt)"
    ) from error
  unknown = sorted(set(params) - set(SPACE))
  if unknown:
    raise ValueError(
        f"--params: unknown {', '.join(unknown)}; the space is "
        f"{', '.join(SPACE)}"
    )
  common = dict(
      dataset=dataset, model=model, attention=attention, preset=preset
  )
  quickstart.resolve_config(**common, **fixed)  # fails early on bad values
  from data_prep import datasets  # pylint: disable=import-outside-toplevel
  from linrec_jax.training import train  # pylint: disable=import-outside-toplevel

  data_dir = datasets.prepared_dir(dataset, data_root, prepared_root)
  os.makedirs(workdir, exist_ok=True)
  rows = []

  def objective(trial):
    chosen = {name: _suggest(trial, name) for name in params}
    config = quickstart.resolve_config(**common, **fixed, **chosen)
    trial_dir = os.path.join(workdir, f"trial_{trial.number:03d}")
    row = dict(
        trial=trial.number,
        state="running",
        params=", ".join(f"{k}={v:.4g}" for k, v in chosen.items()),
        workdir=trial_dir,
    )
    row["best_valid_" + OBJECTIVE] = -math.inf
    rows.append(row)

    def on_epoch(record):
      if OBJECTIVE not in record.get("valid", {}):
        return
      value = record["valid"][OBJECTIVE]
      row["best_valid_" + OBJECTIVE] = max(
          row["best_valid_" + OBJECTIVE], value
      )
      row["epochs_run"] = record["epoch"]
      trial.report(value, record["epoch"])
      if trial.should_prune():
        row["state"] = "pruned"
        raise optuna.TrialPruned(
            f"epoch {record['epoch']}: validation {OBJECTIVE} {value:.4f}"
        )

    report(f"trial {trial.number}: {row['params']} -> {trial_dir}")
    results = train.train_and_evaluate(
        config,
        data_dir,
        trial_dir,
        report=lambda line: None,
        run_info={
            "dataset": dataset,
            "preset": preset,
            "flags": {**fixed, **chosen},
        },
        on_epoch=on_epoch,
    )
    row.update(state="complete", epochs_run=results["epochs_run"])
    row["best_valid_" + OBJECTIVE] = results["valid"][OBJECTIVE]
    row["test_" + OBJECTIVE] = results["test"][OBJECTIVE]
    report(
        f"trial {trial.number}: validation {OBJECTIVE} "
        f"{row['best_valid_' + OBJECTIVE]:.4f}"
    )
    return row["best_valid_" + OBJECTIVE]

  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = optuna.create_study(
      direction="maximize",
      sampler=optuna.samplers.TPESampler(seed=seed),
      pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
  )
  study.optimize(objective, n_trials=trials, catch=())
  write_tables(rows, workdir)
  return rows


def write_tables(rows: list[dict], workdir: str) -> None:
  """`trials.csv` and `trials.md`, best validation first."""
  ordered = sorted(rows, key=lambda r: -r["best_valid_" + OBJECTIVE])
  with open(os.path.join(workdir, "trials.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
    writer.writeheader()
    for row in ordered:
      writer.writerow({k: row.get(k, "") for k in TABLE_COLUMNS})
  lines = [
      "| " + " | ".join(TABLE_COLUMNS) + " |",
      "|" + "---|" * len(TABLE_COLUMNS),
  ]
  for row in ordered:
    lines.append(
        "| " + " | ".join(_cell(row.get(k, "")) for k in TABLE_COLUMNS) + " |"
    )
  with open(os.path.join(workdir, "trials.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def _cell(value) -> str:
  if isinstance(value, float):
    return "" if math.isinf(value) else f"{value:.4f}"
  return str(value)
