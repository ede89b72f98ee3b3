"""`linrec-prepare`: raw dataset files to the arrays training reads.

The same program as `python -m data_prep.prepare` (see its --help).
"""

from absl import app

from data_prep import prepare
from linrec_jax import cli


def run() -> None:
  """The `linrec-prepare` command."""
  prepare._define_flags()  # pylint: disable=protected-access
  cli.show_flags_in_help(prepare.__name__)
  app.run(prepare.main)
