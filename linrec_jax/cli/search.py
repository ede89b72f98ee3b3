r"""linrec-search: hyperparameter search with Optuna (pruned trials).

  linrec-search --dataset=ml-1m --preset=cpu --trials=20 --workdir=runs/s
  linrec-search --preset=tiny --dataset=ml-1m-sample --trials=2 \
      --params=lr,dropout --epochs=3 --workdir=/tmp/s

Every trial is a training run in WORKDIR/trial_NNN; WORKDIR/trials.md and
trials.csv rank them by validation NDCG@10. See linrec_jax/cli/hyperparameter_search.py.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from linrec_jax import cli
from linrec_jax import configs

_WORKDIR = flags.DEFINE_string("workdir", None, "Trials and tables go here.")
_TRIALS = flags.DEFINE_integer("trials", 10, "Number of trials.")
_PARAMS = flags.DEFINE_list(
    "params",
    ["lr", "dropout"],
    "Names of linrec_jax.cli.hyperparameter_search.SPACE to search.",
)
_DATASET = flags.DEFINE_string("dataset", "ml-1m", "As linrec-train.")
_MODEL = flags.DEFINE_string("model", "sasrec", "As linrec-train.")
_ATTENTION = flags.DEFINE_string("attention", "linrec", "As linrec-train.")
_PRESET = flags.DEFINE_enum(
    "preset", "cpu", list(configs.PRESETS), "As linrec-train."
)
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Most epochs per trial (default: the preset's)."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sampler.")
_DATA_ROOT = flags.DEFINE_string("data_root", None, "As linrec-train.")
_PREPARED_ROOT = flags.DEFINE_string(
    "prepared_root", "prepared", "As linrec-train."
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _WORKDIR.value:
    sys.exit("error: --workdir: required")
  logging.set_verbosity(logging.WARNING)
  from linrec_jax.cli import hyperparameter_search as search  # pylint: disable=import-outside-toplevel

  fixed = {} if _EPOCHS.value is None else {"epochs": _EPOCHS.value}
  try:
    search.search(
        workdir=_WORKDIR.value,
        trials=_TRIALS.value,
        params=tuple(_PARAMS.value),
        dataset=_DATASET.value,
        model=_MODEL.value,
        attention=_ATTENTION.value,
        preset=_PRESET.value,
        seed=_SEED.value,
        data_root=_DATA_ROOT.value,
        prepared_root=_PREPARED_ROOT.value,
        **fixed,
    )
  except (ImportError, ValueError) as error:
    sys.exit(f"error: {error}")
  print(open(f"{_WORKDIR.value}/trials.md").read(), end="")


def run() -> None:
  """The `linrec-search` command."""
  cli.show_flags_in_help(__name__)
  app.run(main)


if __name__ == "__main__":
  run()
