"""The command-line programs: `linrec-prepare`, `linrec-train`,
`linrec-recommend`, `linrec-benchmark` and `linrec-search` (see
pyproject.toml)."""

import sys

from absl import flags


def show_flags_in_help(module_name: str) -> None:
  """Lists the flags of `module_name` under `--help`.

  absl's `--help` shows the flags of the main module (`sys.argv[0]`); a
  console script or `python -m experiments.x` wrapper defines none itself.
  """
  for flag in flags.FLAGS.get_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
