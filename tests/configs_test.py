"""Tests of the presets (`linrec_jax.configs`), the help texts and the
choice lists that are checked before JAX starts."""

import dataclasses

from ml_collections import config_dict
import pytest

from linrec_jax import choices
from linrec_jax import configs
from linrec_jax import models
from linrec_jax.cli import config_help
from linrec_jax.layers import attention
from linrec_jax.layers import encoder
from linrec_jax.training import config as config_lib

FIELDS = [f.name for f in dataclasses.fields(config_lib.TrainConfig)]


@pytest.mark.parametrize("preset", configs.PRESETS)
def test_every_preset_is_a_config_file_with_every_field(preset):
  config = configs.preset_module(preset).get_config()
  assert isinstance(config, config_dict.ConfigDict)
  assert sorted(config.keys()) == sorted(FIELDS)
  assert configs.to_train_config(config) == configs.to_train_config(
      configs.get_config(preset)
  )


def test_resolution_order_defaults_preset_dataset_model():
  # The values below are those the presets document (LINREC_NOTES §3):
  # cpu: hidden 64, 2 heads, FFN 256, batch 32, constant lr 1e-3, length
  # buckets with the epoch normaliser; on Gowalla padded batches of 256,
  # N 100, sampled softmax, lr 2e-3 cosine; BERT4Rec on cpu: padded batches,
  # constant lr 1e-3, patience 10.
  cpu = configs.get_config("cpu")
  assert (cpu.hidden, cpu.heads, cpu.ffn, cpu.batch_size) == (64, 2, 256, 32)
  assert (cpu.lr, cpu.lr_schedule, cpu.warmup_steps) == (1e-3, "constant", 0)
  assert (cpu.length_bucket, cpu.loss_normalizer) == (25, "epoch")
  assert cpu.keep_checkpoints == 2  # a TrainConfig default cpu keeps
  gowalla = configs.get_config("cpu", dataset="gowalla")
  assert (gowalla.batch_size, gowalla.max_len, gowalla.loss) == (
      256,
      100,
      "sampled",
  )
  assert (gowalla.lr, gowalla.lr_schedule, gowalla.heads) == (2e-3, "cosine", 4)
  assert (gowalla.length_bucket, gowalla.loss_normalizer) == (0, "batch")
  bert = configs.get_config("cpu", dataset="gowalla", model="bert4rec")
  assert (bert.model, bert.causal, bert.train_mode) == (
      "bert4rec",
      False,
      "cloze",
  )
  assert (bert.lr, bert.lr_schedule, bert.patience) == (1e-3, "constant", 10)
  assert bert.batch_size == 256  # the dataset's value survives the model's
  bert_ml1m = configs.get_config("cpu", dataset="ml-1m", model="bert4rec")
  assert (bert_ml1m.batch_size, bert_ml1m.heads, bert_ml1m.ffn) == (32, 2, 256)
  assert (bert_ml1m.length_bucket, bert_ml1m.loss_normalizer) == (0, "batch")
  assert (bert.heads, bert.ffn) == (4, 128)  # Gowalla's own shapes
  # A prepared directory brings no dataset values.
  assert configs.get_config("cpu", dataset="some/dir").batch_size == 32


def test_cpu_attention_dropout_only_where_there_are_weights():
  for variant in attention.VARIANTS:
    config = configs.get_config("cpu", dataset="ml-1m", attention=variant)
    expected = 0.2 if variant in attention.WEIGHT_DROPOUT_VARIANTS else 0.0
    assert config.attention_dropout == expected, variant
    if variant in attention.CAUSAL_VARIANTS:  # The preset is causal.
      configs.to_train_config(config)
  # The TrainConfig default attention (linrec) has no weights to drop.
  assert configs.get_config("cpu").attention_dropout == 0.0


def test_official_softmax_keeps_the_masks_linrec_runs_unmasked():
  linrec = configs.get_config("official", attention="linrec")
  softmax = configs.get_config("official", attention="softmax")
  assert (linrec.causal, linrec.mask_padding) == (False, False)
  assert (softmax.causal, softmax.mask_padding) == (True, True)


def test_bad_preset_argument_names_the_flag():
  with pytest.raises(ValueError, match="^--config: 'size=big'"):
    configs.preset_module("cpu").get_config("size=big")
  with pytest.raises(ValueError, match="^--preset: 'huge'"):
    configs.get_config("huge")
  with pytest.raises(ValueError, match="^--hiden:"):
    configs.to_train_config({"hiden": 3})


def test_every_field_has_a_real_help_sentence():
  assert set(config_help.FIELD_HELP) == set(FIELDS)
  for name, text in config_help.FIELD_HELP.items():
    words = text.split()
    assert len(words) >= 5, (name, text)
    assert text.rstrip().endswith("."), (name, text)
    assert text.lower().strip(".") != name.replace("_", " "), name


def test_choice_lists_match_the_library():
  assert set(choices.MODELS) == set(models.MODELS)
  assert set(choices.ATTENTION_VARIANTS) == set(attention.VARIANTS)
  assert choices.CAUSAL_ATTENTION_VARIANTS == attention.CAUSAL_VARIANTS
  assert (
      choices.WEIGHT_DROPOUT_ATTENTION_VARIANTS
      == attention.WEIGHT_DROPOUT_VARIANTS
  )
  assert set(choices.ACTIVATIONS) == set(encoder.ACTIVATIONS)
