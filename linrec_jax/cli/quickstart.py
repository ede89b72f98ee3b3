"""`linrec_jax.run`: train and test a named dataset, model and attention.

  import linrec_jax
  results = linrec_jax.run(dataset="ml-1m", model="sasrec",
                           attention="linrec", preset="cpu",
                           workdir="runs/a", lr=3e-4)
  print(results["test"]["ndcg@10"])

The same resolution as `linrec-train` (TrainConfig() <- preset <- the
dataset's values for that preset <- the keyword overrides) and the same
workdir: rerunning with the same workdir resumes.
"""

from typing import Callable

from linrec_jax import configs
from linrec_jax.training import config as config_lib


def resolve_config(
    *,
    dataset: str = "ml-1m",
    model: str = "sasrec",
    attention: str = "linrec",
    preset: str = "cpu",
    **overrides,
) -> config_lib.TrainConfig:
  """The validated `TrainConfig` of a `run` call.

  Raises:
    ValueError (`config_lib.ConfigError`): naming the field at fault.
  """
  values = configs.get_config(
      preset, dataset=dataset, model=model, attention=attention
  ).to_dict()
  values.update(overrides)
  return configs.to_train_config(values)


def run(
    *,
    workdir: str,
    dataset: str = "ml-1m",
    model: str = "sasrec",
    attention: str = "linrec",
    preset: str = "cpu",
    data_root: str | None = None,
    prepared_root: str = "prepared",
    report: Callable[[str], None] = print,
    **overrides,
) -> dict:
  """Trains with early stopping, tests the best parameters, returns results.

  Args:
    workdir: checkpoints, logs and results.json go here.
    dataset: a name of `linrec_jax.configs.DATASETS` (raw files under
      `data_root`, prepared on first use into `prepared_root/<name>`) or a
      directory written by `data_prep`.
    model: "sasrec" or "bert4rec".
    attention: a name of `linrec_jax.choices.ATTENTION_VARIANTS`.
    preset: "cpu", "official" or "tiny" (`linrec_jax/configs`).
    data_root: the raw datasets (default: $LINREC_DATA_DIR, else
      ../shared/data).
    prepared_root: where prepared arrays are cached.
    report: receives the console lines.
    **overrides: any `TrainConfig` field, e.g. `lr=3e-4, epochs=5`.

  Returns:
    The content of `workdir/results.json` (`valid`, `test`, `best_epoch`,
    ...).
  """
  config = resolve_config(
      dataset=dataset,
      model=model,
      attention=attention,
      preset=preset,
      **overrides,
  )
  # pylint: disable=import-outside-toplevel
  from data_prep import datasets
  from linrec_jax.training import train
  # pylint: enable=import-outside-toplevel
  data_dir = datasets.prepared_dir(dataset, data_root, prepared_root)
  return train.train_and_evaluate(
      config,
      data_dir,
      workdir,
      report=report,
      run_info={"dataset": dataset, "preset": preset, "flags": overrides},
  )
