"""Hyperparameter presets as ml_collections config files.

Each preset is a module here (`cpu.py`, `official.py`, `tiny.py`) with a
`get_config(arg)` that returns a `ConfigDict` holding every `TrainConfig`
field, resolved for the dataset, model and attention named in `arg`. A run's
configuration is

  TrainConfig() <- the preset <- the dataset's values for that preset
                <- explicit flags (each step overrides the last)

From Python:

  config = configs.get_config("cpu", dataset="ml-1m", model="bert4rec")
  config.lr = 3e-4
  train_config = configs.to_train_config(config)
"""

import dataclasses
import importlib

from absl import flags
from ml_collections import config_dict
from ml_collections import config_flags

from linrec_jax.training import config as config_lib

PRESETS = ("cpu", "official", "tiny")
# name -> where its raw files lie under the data root (LINREC_DATA_DIR;
# preparation options come from `data_prep.presets`).
DATASETS = {
    "ml-1m": "ml-1m/ml-1m.txt.gz",
    "ml-1m-sample": "ml-1m-sample/ml-1m.txt",
    "gowalla": "gowalla",
}


def preset_module(name: str):
  """The module of preset `name` (one of `PRESETS`)."""
  if name not in PRESETS:
    raise ValueError(f"--preset: {name!r} is not one of {', '.join(PRESETS)}")
  return importlib.import_module(f"linrec_jax.configs.{name}")


def get_config(
    preset: str = "cpu",
    *,
    dataset: str = "",
    model: str = "",
    attention: str = "",
) -> config_dict.ConfigDict:
  """Preset `preset` resolved for a dataset, model and attention.

  Args:
    preset: one of `PRESETS`.
    dataset: a name of `DATASETS` brings that dataset's values of the preset;
      anything else (a prepared directory, "") brings none.
    model: "sasrec" or "bert4rec" ("": the `TrainConfig` default).
    attention: an attention variant ("": the `TrainConfig` default).

  Returns:
    A ConfigDict with every `TrainConfig` field.
  """
  pairs = dict(
      dataset=dataset if dataset in DATASETS else "",
      model=model,
      attention=attention,
  )
  arg = ",".join(f"{key}={value}" for key, value in pairs.items() if value)
  return preset_module(preset).get_config(arg)


def load_file(path: str) -> dict:
  """The fields set by an ml_collections config file `path[:arg]`.

  The file's `get_config(...)` may return a ConfigDict or a plain dict with
  any subset of the `TrainConfig` fields.

  Raises:
    ValueError: naming --config when the file cannot be loaded.
  """
  # ml_collections' own loader, on a private set of flags (it splits off
  # `:arg` and calls `get_config(arg)`).
  argv = ["linrec", f"--config={path}"]
  private = flags.FlagValues()
  holder = config_flags.DEFINE_config_file(
      "config", None, flag_values=private, lock_config=False, sys_argv=argv
  )
  try:
    private(argv)
    loaded = holder.value
    values = loaded.to_dict() if hasattr(loaded, "to_dict") else dict(loaded)
  except (OSError, TypeError, ValueError, SyntaxError, flags.Error) as error:
    first = str(error).strip().splitlines()
    raise ValueError(
        f"--config={path}: cannot load it"
        f"{': ' + first[-1] if first else ''}"
    ) from error
  unknown = sorted(set(values) - set(field_names()))
  if unknown:
    raise ValueError(
        f"--config={path}: unknown field(s) {', '.join(unknown)}"
        f"; the fields are those of linrec_jax.training.config.TrainConfig"
    )
  return values


def field_names() -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(config_lib.TrainConfig))


def to_train_config(values) -> config_lib.TrainConfig:
  """A `TrainConfig` from a ConfigDict or dict of fields (others default).

  Raises:
    ValueError: naming the unknown field.
  """
  values = values.to_dict() if hasattr(values, "to_dict") else dict(values)
  unknown = sorted(set(values) - set(field_names()))
  if unknown:
    raise ValueError(f"--{unknown[0]}: not a field of TrainConfig")
  return config_lib.TrainConfig(**values)
