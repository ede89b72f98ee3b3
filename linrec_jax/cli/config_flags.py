"""Flags for every `TrainConfig` field, resolved against the presets.

Each field `x` is a flag `--x`, also spelled `--config.x` (an alias: both
set the same value, the last one given wins). The preset comes from
`--preset` (a module of `linrec_jax.configs`) or from `--config=FILE[:ARG]`,
any ml_collections config file; then

  TrainConfig() <- preset (or --config file) <- the dataset's values for
  that preset <- explicit flags.

Nothing here imports JAX: a bad value fails before JAX starts.
"""

import dataclasses
import textwrap

from absl import flags

from linrec_jax import choices
from linrec_jax import configs
from linrec_jax.cli import config_help
from linrec_jax.configs import common as config_common
from linrec_jax.training import config as config_lib

_DEFINE = {
    bool: flags.DEFINE_bool,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    str: flags.DEFINE_string,
}
# Fields whose value is one of a few names (shown in --help).
CHOICES = {
    "model": choices.MODELS,
    "attention": choices.ATTENTION_VARIANTS,
    "activation": choices.ACTIVATIONS,
    "train_mode": config_lib.TRAIN_MODES,
    "loss": config_lib.LOSSES,
    "eval_protocol": config_lib.EVAL_PROTOCOLS,
    "lr_schedule": config_lib.LR_SCHEDULES,
    "pad_side": config_lib.PAD_SIDES,
    "parallel": config_lib.PARALLEL,
    "loss_normalizer": config_lib.LOSS_NORMALIZERS,
}
SELECTION_FLAGS = ("dataset", "preset", "config")
_NO_HELP = "(no help text: add one to linrec_jax/cli/config_help.py)"


def _fields():
  return dataclasses.fields(config_lib.TrainConfig)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines `--dataset`, `--preset`, `--config` and one flag per field.

  Args:
    flag_values: where to define them (tests pass a fresh `FlagValues`).
  """
  flags.DEFINE_string(
      "dataset",
      "ml-1m",
      "The data: one of "
      f"{', '.join(configs.DATASETS)} (raw files under --data_root, prepared "
      "on first use), or a directory written by data_prep.",
      flag_values=flag_values,
  )
  flags.DEFINE_enum(
      "preset",
      "cpu",
      list(configs.PRESETS),
      "Hyperparameter preset (linrec_jax/configs/<name>.py); any flag "
      "overrides it.",
      flag_values=flag_values,
  )
  flags.DEFINE_string(
      "config",
      None,
      "An ml_collections config file, FILE.py or "
      "FILE.py:ARG, whose get_config(ARG) returns some TrainConfig fields; "
      "it takes the place of --preset.",
      flag_values=flag_values,
  )
  for field in _fields():
    define = _DEFINE.get(type(field.default), flags.DEFINE_string)
    define(
        field.name,
        None,
        config_help.FIELD_HELP.get(field.name, _NO_HELP),
        flag_values=flag_values,
    )
    flags.DEFINE_alias(
        f"config.{field.name}", field.name, flag_values=flag_values
    )


def dataset_key(dataset: str) -> str:
  """The preset key of a dataset name; prepared dirs use no dataset preset."""
  return dataset if dataset in configs.DATASETS else "custom"


def explicit_values(values=flags.FLAGS) -> dict:
  """The fields set on the command line (or in a --flagfile)."""
  return {
      f.name: values[f.name].value
      for f in _fields()
      if values[f.name].value is not None
  }


def resolve(values=flags.FLAGS) -> tuple[dict, dict]:
  """Every field's value in effect and where it comes from.

  Returns:
    `(fields, sources)`: `fields` maps each `TrainConfig` field to its
    value; `sources` maps it to "flag", "preset NAME", "preset NAME with
    --dataset=D [--model=M] [--attention=A]" (the preset's values for them),
    "--config file" or "default" (the TrainConfig default, also where a
    preset sets the same value).

  Raises:
    ValueError: naming --config when its file is unusable.
  """
  explicit = explicit_values(values)
  defaults = config_common.defaults()
  if values.config:
    if values["preset"].present:
      raise ValueError("--config: give a config file or --preset, not both")
    preset = configs.load_file(values.config)
    resolved, specific, label = dict(defaults, **preset), {}, "--config file"
  else:
    label = f"preset {values.preset}"
    given = [f"--dataset={values.dataset}"] + [
        f"--{name}={explicit[name]}"
        for name in ("model", "attention")
        if name in explicit
    ]
    preset = configs.get_config(values.preset).to_dict()
    resolved = configs.get_config(
        values.preset,
        dataset=values.dataset,
        model=explicit.get("model", defaults["model"]),
        attention=explicit.get("attention", defaults["attention"]),
    ).to_dict()
    specific = {name for name in resolved if resolved[name] != preset[name]}
  sources = {}
  for name, default in defaults.items():
    if name in explicit:
      sources[name] = "flag"
    elif name in specific:
      sources[name] = f"{label} with {' '.join(given)}"
    elif name in preset and preset[name] != default:
      sources[name] = label
    else:
      sources[name] = "default"
  resolved.update(explicit)
  return resolved, sources


def config_from_flags(values=flags.FLAGS) -> config_lib.TrainConfig:
  """TrainConfig() <- preset <- dataset preset <- explicit flags; validated.

  Raises:
    ValueError (`config_lib.ConfigError` for a bad value): naming the flag.
  """
  resolved, _ = resolve(values)
  return configs.to_train_config(resolved)


def _format_value(value) -> str:
  if isinstance(value, bool):
    return str(value).lower()
  return repr(value) if isinstance(value, str) and not value else str(value)


def _entry(name: str, head: str, help_text: str) -> list[str]:
  body = textwrap.wrap(
      help_text, width=74, initial_indent="      ", subsequent_indent="      "
  )
  return [f"  --{name}{head}", *body]


def help_text(
    values=flags.FLAGS, *, usage: str, run_flags: tuple[str, ...] = ()
) -> str:
  """`--help`: every flag, its help and the value in effect for this command.

  Args:
    values: parsed flags (the command line without --help).
    usage: the lines above the flags (program, what it does).
    run_flags: names of the program's own flags, listed first.
  """
  lines = [usage.rstrip(), "", "Run:"]
  for name in run_flags:
    flag = values[name]
    now = "  (unset)" if flag.value is None else f"={_format_value(flag.value)}"
    lines += _entry(name, now, flag.help)
  lines += _entry(
      "flagfile",
      "=FILE",
      "Read more flags from FILE, one per "
      "line (absl); lines starting with # are comments. Keeps a "
      "whole experiment in one file, like a RecBole yaml.",
  )
  lines += ["", "Selection:"]
  for name in SELECTION_FLAGS:
    flag = values[name]
    now = "" if flag.value is None else f"={flag.value}"
    lines += _entry(name, now, flag.help)
  try:
    resolved, sources = resolve(values)
    problem = ""
  except ValueError as error:
    resolved, sources = config_common.defaults(), {}
    problem = f"  ({error}; showing the defaults)"
  try:
    config_from_flags(values)
  except ValueError as error:
    problem = problem or f"  These values do not validate: {error}"
  lines += [
      "",
      *textwrap.wrap(
          "Configuration: each field's value in effect for this command line "
          "and [where it comes from]. Every field is also --config.FIELD=VALUE.",
          width=78,
      ),
      *([problem] if problem else []),
  ]
  for field in _fields():
    help_line = values[field.name].help
    if field.name in CHOICES:
      help_line += f" Choices: {', '.join(CHOICES[field.name])}."
    value = _format_value(resolved.get(field.name, field.default))
    source = sources.get(field.name, "default")
    lines += _entry(field.name, f"={value}  [{source}]", help_line)
  return "\n".join(lines) + "\n"
