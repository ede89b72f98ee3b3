"""The resolved configuration of one training run, validated once.

Entry points turn flags and presets into a `TrainConfig`; library code takes
it (or the explicit values inside it) and never reads flags.
"""

import dataclasses
import json
import math

TRAIN_MODES = ("all", "prefix", "cloze")
LOSSES = ("ce", "sampled")
EVAL_PROTOCOLS = ("full", "uni100", "pop100")
LR_SCHEDULES = ("constant", "cosine", "linear")
PAD_SIDES = ("right", "left")
PARALLEL = ("mesh", "pmap")
# No size, count or seed needs more: larger values are typing errors, and
# they would overflow the int32 arrays and the shapes built from them.
MAX_INT = 2**31 - 1


class ConfigError(ValueError):
  """A configuration value is invalid; the message names the flag at fault."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that determines a training run.

  Field names are the flag names of `experiments/train.py`.
  """

  # Model.
  model: str = "sasrec"
  attention: str = "linrec"
  causal: bool = True
  mask_padding: bool = True
  max_len: int = 200
  hidden: int = 128
  layers: int = 2
  heads: int = 8
  ffn: int = 256
  dropout: float = 0.2
  attention_dropout: float = 0.0
  pre_ln: bool = False
  # Data and objective.
  train_mode: str = "all"
  windows_per_user: int = 1
  window_stride: int = 0
  pad_side: str = "right"
  length_bucket: int = 0
  mask_prob: float = 0.2
  max_predictions: int = 0
  mask_last_prob: float = 0.0
  loss: str = "ce"
  num_negatives: int = 256
  # Optimisation.
  batch_size: int = 2048
  microbatches: int = 1
  lr: float = 1e-3
  lr_schedule: str = "constant"
  warmup_steps: int = 0
  weight_decay: float = 0.0
  grad_clip: float = 0.0
  epochs: int = 100
  max_steps: int = 0
  time_limit_minutes: float = 0.0
  patience: int = 10
  seed: int = 2000
  # Evaluation.
  eval_protocol: str = "full"
  exclude_history: bool = False
  eval_batch_size: int = 256
  eval_every_epochs: int = 1
  # Devices, logging and checkpoints.
  parallel: str = "mesh"
  devices: int = 0
  log_every_steps: int = 50
  checkpoint_every_steps: int = 500
  keep_checkpoints: int = 2

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def _require(condition: bool, flag: str, message: str) -> None:
  if not condition:
    raise ConfigError(f"--{flag}: {message}")


def validate(
    config: TrainConfig,
    *,
    attention_variants,
    causal_variants,
    model_names,
    weight_dropout_variants,
) -> TrainConfig:
  """Checks every field; raises `ConfigError` naming the first bad flag.

  Args:
    config: the configuration to check.
    attention_variants: names accepted by `--attention`.
    causal_variants: names that support `--causal`.
    model_names: names accepted by `--model`.
    weight_dropout_variants: names that accept `--attention_dropout`.

  Returns:
    `config`, unchanged.
  """
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if isinstance(value, float):
      _require(
          math.isfinite(value),
          field.name,
          f"must be a finite number, got {value}",
      )
    elif isinstance(value, int) and not isinstance(value, bool):
      _require(
          abs(value) <= MAX_INT,
          field.name,
          f"{value} is out of range (at most {MAX_INT})",
      )

  def choice(flag, allowed):
    value = getattr(config, flag)
    _require(
        value in allowed,
        flag,
        f"{value!r} is not one of {', '.join(sorted(allowed))}",
    )

  def positive(*flags):
    for flag in flags:
      value = getattr(config, flag)
      _require(value > 0, flag, f"must be positive, got {value}")

  def non_negative(*flags):
    for flag in flags:
      value = getattr(config, flag)
      _require(value >= 0, flag, f"must be >= 0, got {value}")

  choice("model", model_names)
  choice("attention", attention_variants)
  choice("train_mode", TRAIN_MODES)
  choice("loss", LOSSES)
  choice("eval_protocol", EVAL_PROTOCOLS)
  choice("lr_schedule", LR_SCHEDULES)
  choice("pad_side", PAD_SIDES)
  choice("parallel", PARALLEL)
  positive(
      "max_len",
      "hidden",
      "layers",
      "heads",
      "ffn",
      "batch_size",
      "lr",
      "epochs",
      "patience",
      "eval_batch_size",
      "eval_every_epochs",
      "log_every_steps",
      "checkpoint_every_steps",
      "keep_checkpoints",
      "num_negatives",
      "microbatches",
  )
  non_negative(
      "warmup_steps",
      "weight_decay",
      "grad_clip",
      "max_steps",
      "time_limit_minutes",
      "devices",
      "windows_per_user",
      "length_bucket",
      "seed",
      "window_stride",
  )
  if config.window_stride:
    _require(
        config.train_mode == "all", "window_stride", "needs --train_mode=all"
    )
    _require(
        config.window_stride <= config.max_len,
        "window_stride",
        f"must be at most --max_len={config.max_len}, got "
        f"{config.window_stride}",
    )
  if config.length_bucket:
    _require(
        config.train_mode != "cloze" and config.pad_side == "right",
        "length_bucket",
        "needs --train_mode=all or prefix with "
        "--pad_side=right (cropping left padding would move positions)",
    )
  _require(
      0.0 <= config.dropout < 1.0,
      "dropout",
      f"must lie in [0, 1), got {config.dropout}",
  )
  _require(
      0.0 <= config.attention_dropout < 1.0,
      "attention_dropout",
      f"must lie in [0, 1), got {config.attention_dropout}",
  )
  _require(
      0.0 < config.mask_prob < 1.0,
      "mask_prob",
      f"must lie in (0, 1), got {config.mask_prob}",
  )
  _require(
      0.0 <= config.mask_last_prob <= 1.0,
      "mask_last_prob",
      f"must lie in [0, 1], got {config.mask_last_prob}",
  )
  _require(
      0 <= config.max_predictions <= config.max_len,
      "max_predictions",
      f"must lie in [0, --max_len={config.max_len}], got "
      f"{config.max_predictions}",
  )
  _require(
      config.batch_size % config.microbatches == 0,
      "microbatches",
      f"{config.microbatches} does not divide --batch_size="
      f"{config.batch_size}",
  )
  _require(
      config.hidden % config.heads == 0,
      "heads",
      f"{config.heads} heads do not divide --hidden={config.hidden}",
  )
  if config.attention_dropout:
    _require(
        config.attention in weight_dropout_variants,
        "attention_dropout",
        f"attention {config.attention!r} forms no attention weights to "
        f"drop; use one of {', '.join(sorted(weight_dropout_variants))}"
        " or 0",
    )
  if config.causal:
    _require(
        config.attention in causal_variants,
        "causal",
        f"attention {config.attention!r} has no causal form; use one of "
        f"{', '.join(sorted(causal_variants))} or --nocausal",
    )
  if config.model == "bert4rec":
    _require(
        config.train_mode == "cloze",
        "train_mode",
        "bert4rec trains with --train_mode=cloze",
    )
    _require(
        not config.causal,
        "causal",
        "bert4rec is bidirectional: pass --nocausal",
    )
  else:
    _require(
        config.train_mode != "cloze",
        "train_mode",
        "cloze masking is for --model=bert4rec",
    )
  if config.train_mode == "all" and not config.causal:
    raise ConfigError(
        "--causal: next-item training at all positions with a non-causal "
        "encoder sees the future; use --causal or --train_mode=prefix"
    )
  return config
