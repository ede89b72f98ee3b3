"""Tests of `linrec_jax.training.config` and of resolving flags against presets."""

import dataclasses
import json

from absl import flags
import pytest

from experiments import config_flags
from experiments import presets
from linrec_jax import models
from linrec_jax.layers import attention
from linrec_jax.training import config as config_lib


def _validate(**fields):
  return config_lib.TrainConfig(**fields)


def _from_flags(*argv):
  """Resolves a command line against a fresh set of flags."""
  values = flags.FlagValues()
  config_flags.define_flags(values)
  values(["train"] + list(argv))
  return config_flags.config_from_flags(values)


def test_defaults_are_valid():
  assert _validate() == config_lib.TrainConfig()


def test_to_json_holds_every_field():
  config = config_lib.TrainConfig(
      hidden=32, causal=False, train_mode="prefix", lr=0.5
  )
  assert json.loads(config.to_json()) == dataclasses.asdict(config)


BAD = [
    # (fields, the flag the message must name)
    (dict(model="gpt"), "model"),
    (dict(attention="fancy"), "attention"),
    (dict(train_mode="random"), "train_mode"),
    (dict(loss="mse"), "loss"),
    (dict(eval_protocol="uni50"), "eval_protocol"),
    (dict(lr_schedule="step"), "lr_schedule"),
    (dict(pad_side="middle"), "pad_side"),
    (dict(parallel="pjit"), "parallel"),
    (dict(loss_normalizer="mean"), "loss_normalizer"),
    (dict(max_len=0), "max_len"),
    (dict(hidden=0), "hidden"),
    (dict(hidden=-8), "hidden"),
    (dict(layers=0), "layers"),
    (dict(heads=0), "heads"),
    (dict(ffn=0), "ffn"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=-16), "batch_size"),
    (dict(eval_batch_size=0), "eval_batch_size"),
    (dict(lr=0.0), "lr"),
    (dict(epochs=0), "epochs"),
    (dict(patience=0), "patience"),
    (dict(eval_every_epochs=0), "eval_every_epochs"),
    (dict(log_every_steps=0), "log_every_steps"),
    (dict(checkpoint_every_steps=0), "checkpoint_every_steps"),
    (dict(keep_checkpoints=0), "keep_checkpoints"),
    (dict(num_negatives=0), "num_negatives"),
    (dict(max_steps=-1), "max_steps"),
    (dict(devices=-1), "devices"),
    (dict(warmup_steps=-1), "warmup_steps"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(grad_clip=-1.0), "grad_clip"),
    (dict(windows_per_user=-1), "windows_per_user"),
    (dict(window_stride=-1), "window_stride"),
    (dict(window_stride=201), "window_stride"),
    (dict(window_stride=50, train_mode="prefix"), "window_stride"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(mask_prob=0.0), "mask_prob"),
    (dict(mask_prob=1.0), "mask_prob"),
    (dict(max_predictions=-1), "max_predictions"),
    (dict(mask_last_prob=1.5), "mask_last_prob"),
    (dict(max_len=50, max_predictions=51), "max_predictions"),
    (dict(hidden=16, heads=3), "heads"),
    (dict(batch_size=64, microbatches=3), "microbatches"),
    (dict(microbatches=0), "microbatches"),
    (dict(attention="linrec_seqnorm", causal=True), "causal"),
    (dict(model="bert4rec", causal=False, train_mode="all"), "train_mode"),
    (dict(model="bert4rec", causal=True, train_mode="cloze"), "causal"),
    (dict(model="sasrec", train_mode="cloze"), "train_mode"),
    (dict(model="sasrec", causal=False, train_mode="all"), "causal"),
    (dict(length_bucket=-1), "length_bucket"),
    (dict(length_bucket=25, pad_side="left"), "length_bucket"),
    (
        dict(
            model="bert4rec",
            causal=False,
            train_mode="cloze",
            length_bucket=25,
            pad_side="left",
        ),
        "length_bucket",
    ),
    (dict(attention="softmax", attention_dropout=1.0), "attention_dropout"),
    (dict(attention="softmax", attention_dropout=-0.1), "attention_dropout"),
    (dict(attention="linrec", attention_dropout=0.2), "attention_dropout"),
    # Not finite: NaN fails every comparison, inf passes "positive".
    (dict(lr=float("nan")), "lr"),
    (dict(lr=float("inf")), "lr"),
    (dict(weight_decay=float("nan")), "weight_decay"),
    (dict(weight_decay=float("inf")), "weight_decay"),
    (dict(grad_clip=float("inf")), "grad_clip"),
    (dict(grad_clip=float("nan")), "grad_clip"),
    (dict(dropout=float("nan")), "dropout"),
    (dict(mask_prob=float("nan")), "mask_prob"),
    (dict(mask_last_prob=float("nan")), "mask_last_prob"),
    (dict(time_limit_minutes=float("inf")), "time_limit_minutes"),
    (dict(time_limit_minutes=float("nan")), "time_limit_minutes"),
    (dict(lr=-1e-3), "lr"),
    # Out of any range a shape or an int32 array can hold.
    (dict(hidden=2**40, heads=1), "hidden"),
    (dict(batch_size=10**12), "batch_size"),
    (dict(max_len=2**31), "max_len"),
    (dict(epochs=10**10), "epochs"),
    (dict(seed=-1), "seed"),
    (dict(seed=2**31), "seed"),
]


@pytest.mark.parametrize(
    "fields, flag",
    BAD,
    ids=["-".join(f"{k}={v}" for k, v in fields.items()) for fields, _ in BAD],
)
def test_bad_value_names_its_flag(fields, flag):
  with pytest.raises(config_lib.ConfigError) as error:
    _validate(**fields)
  assert str(error.value).startswith(f"--{flag}:"), str(error.value)


@pytest.mark.parametrize(
    "fields",
    [
        dict(attention="efficient", causal=False, train_mode="prefix"),
        dict(model="bert4rec", causal=False, train_mode="cloze"),
        dict(
            model="bert4rec",
            causal=False,
            train_mode="cloze",
            length_bucket=25,
            loss_normalizer="epoch",
        ),
        dict(hidden=12, heads=3),
        dict(dropout=0.0, max_steps=0, devices=0, windows_per_user=0),
        dict(attention="linrec_learned_decay"),
        dict(attention="softmax_learned_decay"),
        dict(
            model="bert4rec",
            attention="linrec_learned_decay",
            causal=False,
            train_mode="cloze",
        ),
    ],
)
def test_good_values_pass(fields):
  assert _validate(**fields) == config_lib.TrainConfig(**fields)


@pytest.mark.parametrize("preset", sorted(presets.PRESETS))
@pytest.mark.parametrize("dataset", sorted(presets.DATASETS) + ["some/dir"])
@pytest.mark.parametrize("model", sorted(models.MODELS))
def test_every_preset_resolves_to_a_valid_config(preset, dataset, model):
  config = _from_flags(
      f"--preset={preset}", f"--dataset={dataset}", f"--model={model}"
  )
  assert config.model == model
  if model == "bert4rec":
    assert (config.causal, config.train_mode) == (False, "cloze")


def test_flags_override_dataset_preset_over_preset_over_defaults():
  # cpu says batch 32; its ml-1m-sample values say 64; the flag says 16.
  assert presets.CPU["batch_size"] == 32
  sample = ("--preset=cpu", "--dataset=ml-1m-sample")
  assert _from_flags(*sample).batch_size == 64
  assert _from_flags(*sample, "--batch_size=16").batch_size == 16
  # A prepared directory has no dataset preset.
  assert _from_flags("--preset=cpu", "--dataset=some/dir").batch_size == 32
  config = _from_flags(
      *sample, "--nocausal", "--train_mode=prefix", "--eval_protocol=pop100"
  )
  assert (config.causal, config.train_mode) == (False, "prefix")
  assert config.hidden == presets.CPU["hidden"]
  # Neither preset names it: the TrainConfig default.
  assert config.keep_checkpoints == config_lib.TrainConfig.keep_checkpoints
  assert config.eval_protocol == "pop100"


def test_cpu_bert4rec_trains_longer_at_a_constant_rate():
  bert = _from_flags("--preset=cpu", "--model=bert4rec", "--dataset=gowalla")
  assert (bert.lr, bert.lr_schedule, bert.warmup_steps) == (1e-3, "constant", 0)
  assert (bert.epochs, bert.patience) == (100, 10)
  assert bert.loss == "sampled"  # The dataset's values still apply.
  gowalla = _from_flags("--preset=cpu", "--model=sasrec", "--dataset=gowalla")
  assert (gowalla.lr_schedule, gowalla.patience) == ("cosine", 3)


def test_official_softmax_keeps_the_masks():
  linrec = _from_flags("--preset=official", "--attention=linrec")
  softmax = _from_flags("--preset=official", "--attention=softmax")
  assert (linrec.causal, linrec.mask_padding) == (False, False)
  assert (softmax.causal, softmax.mask_padding) == (True, True)


def test_bad_flag_from_the_command_line_names_it():
  with pytest.raises(config_lib.ConfigError, match="^--heads:"):
    _from_flags("--preset=tiny", "--heads=3")
  with pytest.raises(flags.IllegalFlagValueError, match="--preset"):
    _from_flags("--preset=huge")
