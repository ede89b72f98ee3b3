"""What the preset files share: the defaults and the `get_config` argument.

A preset file's `get_config(arg)` takes an optional string of comma-separated
`key=value` pairs naming the dataset, model and attention the preset is
resolved for, as ml_collections passes what follows the colon of
`--config=linrec_jax/configs/cpu.py:dataset=gowalla,model=bert4rec`.
"""

import dataclasses

from ml_collections import config_dict

from linrec_jax.training import config as config_lib

# Keys a preset's `get_config` argument may hold.
ARG_KEYS = ("dataset", "model", "attention")
# BERT4Rec in every preset: bidirectional, trained on the cloze task.
BERT4REC = dict(causal=False, train_mode="cloze")


def parse_arg(arg: str | None) -> dict[str, str]:
  """`"dataset=ml-1m,model=bert4rec"` -> `{"dataset": "ml-1m", ...}`.

  Keys left out are `""` (no dataset values; model and attention as the
  `TrainConfig` defaults).

  Raises:
    ValueError: naming the pair that is not `key=value` with a known key.
  """
  options = dict.fromkeys(ARG_KEYS, "")
  for pair in filter(None, (arg or "").split(",")):
    key, sep, value = pair.partition("=")
    if not sep or key.strip() not in ARG_KEYS:
      raise ValueError(
          f"--config: {pair!r} is not one of "
          f"{', '.join(k + '=...' for k in ARG_KEYS)}"
      )
    options[key.strip()] = value.strip()
  return options


def defaults() -> dict:
  """Every `TrainConfig` field with its default value."""
  return dataclasses.asdict(config_lib.TrainConfig())


def build(values: dict, options: dict[str, str]) -> config_dict.ConfigDict:
  """The `TrainConfig` defaults overridden by `values`, as a ConfigDict.

  The model and attention named in `options` are set too, so that a config
  file resolved for `model=bert4rec` trains BERT4Rec on its own.
  """
  resolved = defaults()
  resolved.update(values)
  for key in ("model", "attention"):
    if options.get(key):
      resolved[key] = options[key]
  return config_dict.ConfigDict(resolved)
