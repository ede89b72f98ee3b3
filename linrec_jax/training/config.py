"""The resolved configuration of one training run, validated once.

Entry points turn flags and presets into a `TrainConfig` (constructing one
validates it); library code takes it (or the explicit values inside it) and
never reads flags.
"""

import dataclasses
import json

from linrec_jax import choices
from linrec_jax.layers import config as encoder_config_lib
from linrec_jax.layers.config import ConfigError  # pylint: disable=unused-import

TRAIN_MODES = ("all", "prefix", "cloze")
LOSSES = ("ce", "sampled")
EVAL_PROTOCOLS = ("full", "uni100", "pop100")
LR_SCHEDULES = ("constant", "cosine", "linear")
PAD_SIDES = ("right", "left")
PARALLEL = ("mesh", "pmap")
LOSS_NORMALIZERS = ("batch", "epoch")


@dataclasses.dataclass(frozen=True)
class TrainConfig(encoder_config_lib.EncoderConfig):
  """Everything that determines a training run, validated at construction.

  The model's fields are `EncoderConfig`'s (declared there, once) plus
  `model`; the rest describe the data, the objective, the optimisation,
  the evaluation and the devices. Field names are the flag names of
  `experiments/train.py`; a bad value raises `ConfigError` naming its flag.
  """

  # Model (the encoder's fields come from `EncoderConfig`).
  model: str = "sasrec"
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
  loss_normalizer: str = "batch"
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

  def __post_init__(self):
    super().__post_init__()  # The encoder's fields, and every number.
    _check_training(self)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def _check_training(config: TrainConfig) -> None:
  """Checks the fields beyond the encoder's; raises `ConfigError`."""
  require = encoder_config_lib.require

  def choice(flag, allowed):
    value = getattr(config, flag)
    require(
        value in allowed,
        flag,
        f"{value!r} is not one of {', '.join(sorted(allowed))}",
    )

  def non_negative(*flags):
    for flag in flags:
      value = getattr(config, flag)
      require(value >= 0, flag, f"must be >= 0, got {value}")

  choice("model", choices.MODELS)
  choice("train_mode", TRAIN_MODES)
  choice("loss", LOSSES)
  choice("eval_protocol", EVAL_PROTOCOLS)
  choice("lr_schedule", LR_SCHEDULES)
  choice("pad_side", PAD_SIDES)
  choice("parallel", PARALLEL)
  choice("loss_normalizer", LOSS_NORMALIZERS)
  encoder_config_lib.require_positive(
      config,
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
    require(
        config.train_mode == "all", "window_stride", "needs --train_mode=all"
    )
    require(
        config.window_stride <= config.max_len,
        "window_stride",
        f"must be at most --max_len={config.max_len}, got "
        f"{config.window_stride}",
    )
  if config.length_bucket:
    require(
        config.pad_side == "right",
        "length_bucket",
        "needs --pad_side=right (cropping left padding would move "
        "positions)",
    )
  require(
      0.0 < config.mask_prob < 1.0,
      "mask_prob",
      f"must lie in (0, 1), got {config.mask_prob}",
  )
  require(
      0.0 <= config.mask_last_prob <= 1.0,
      "mask_last_prob",
      f"must lie in [0, 1], got {config.mask_last_prob}",
  )
  require(
      0 <= config.max_predictions <= config.max_len,
      "max_predictions",
      f"must lie in [0, --max_len={config.max_len}], got "
      f"{config.max_predictions}",
  )
  require(
      config.batch_size % config.microbatches == 0,
      "microbatches",
      f"{config.microbatches} does not divide --batch_size="
      f"{config.batch_size}",
  )
  if config.model == "bert4rec":
    require(
        config.train_mode == "cloze",
        "train_mode",
        "bert4rec trains with --train_mode=cloze",
    )
    require(
        not config.causal,
        "causal",
        "bert4rec is bidirectional: pass --nocausal",
    )
  else:
    require(
        config.train_mode != "cloze",
        "train_mode",
        "cloze masking is for --model=bert4rec",
    )
  if config.train_mode == "all" and not config.causal:
    raise ConfigError(
        "--causal: next-item training at all positions with a non-causal "
        "encoder sees the future; use --causal or --train_mode=prefix"
    )
