"""Flags for every `TrainConfig` field, resolved against the presets."""

import dataclasses

from absl import flags

from experiments import presets
from linrec_jax import config as config_lib
from linrec_jax import models
from linrec_jax.layers import attention

_HELP = {
    "model": "sasrec or bert4rec",
    "attention": "attention variant: " + ", ".join(attention.VARIANTS),
    "causal": "unidirectional encoder (SASRec); --nocausal = bidirectional",
    "mask_padding": "mask padded positions in attention (--nomask_padding: "
                    "the authors' unmasked LinRec)",
    "train_mode": "all (next item at every position), prefix (official) or "
                  "cloze (BERT4Rec)",
    "windows_per_user": "training windows per history in mode all (0: all)",
    "length_bucket": "group training rows of similar length and crop each "
                     "batch to a multiple of this many positions (0: pad "
                     "every batch to --max_len); right padding only",
    "max_predictions": "cloze positions predicted per window (0: RecBole's "
                       "int(mask_prob * max_len))",
    "mask_last_prob": "share of cloze windows that mask only their last item "
                      "(BERT4Rec's fine-tuning samples)",
    "attention_dropout": "dropout on the attention weights (RecBole's "
                         "attn_dropout_prob; softmax variants only)",
    "loss": "ce (softmax over all items) or sampled (--num_negatives)",
    "eval_protocol": "full (all items), uni100 or pop100 (sampled)",
    "exclude_history": "select the best epoch by NDCG@10 with the user's "
                       "history excluded from the ranking (both protocols "
                       "are always reported)",
    "lr_schedule": "constant, cosine or linear decay after --warmup_steps",
    "max_steps": "stop after this many steps (0: --epochs decides)",
    "time_limit_minutes": "end training at the first epoch end after this "
                          "many minutes of this process, then test the best "
                          "parameters (0: no limit)",
    "microbatches": "accumulate each device's batch in this many chunks: "
                    "the same update with one chunk's activations in memory",
    "devices": "use the first N devices (0: all)",
    "parallel": "mesh (jit over a device mesh) or pmap",
}

_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
           float: flags.DEFINE_float, str: flags.DEFINE_string}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines `--dataset`, `--preset` and one flag per `TrainConfig` field.

  Args:
    flag_values: where to define them (tests pass a fresh `FlagValues`).
  """
  flags.DEFINE_string("dataset", "ml-1m", "one of "
                      f"{', '.join(presets.DATASETS)}, or a prepared dir",
                      flag_values=flag_values)
  flags.DEFINE_enum("preset", "cpu", list(presets.PRESETS),
                    "hyperparameter preset; any flag overrides it",
                    flag_values=flag_values)
  for field in dataclasses.fields(config_lib.TrainConfig):
    kind = type(field.default)
    help_text = _HELP.get(field.name, field.name.replace("_", " "))
    _DEFINE[kind](field.name, None,
                  f"{help_text} (default: from --preset, else {field.default})",
                  flag_values=flag_values)


def dataset_key(dataset: str) -> str:
  """The preset key of a dataset name; prepared dirs use no dataset preset."""
  return dataset if dataset in presets.DATASETS else "custom"


def config_from_flags(values=flags.FLAGS) -> config_lib.TrainConfig:
  """TrainConfig() <- preset <- dataset preset <- explicit flags; validated."""
  fields = {f.name for f in dataclasses.fields(config_lib.TrainConfig)}
  model = values.model or config_lib.TrainConfig.model
  variant = values.attention or config_lib.TrainConfig.attention
  resolved = presets.preset_values(values.preset, dataset_key(values.dataset),
                                   model, variant)
  resolved.update({name: values[name].value for name in fields
                   if values[name].value is not None})
  config = config_lib.TrainConfig(**resolved)
  return config_lib.validate(
      config, attention_variants=attention.VARIANTS,
      causal_variants=attention.CAUSAL_VARIANTS, model_names=models.MODELS,
      weight_dropout_variants=attention.WEIGHT_DROPOUT_VARIANTS)
