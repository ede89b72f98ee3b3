"""`python -m experiments.train`: the `linrec-train` command.

The program lives in `linrec_jax.cli.train` (installed with the package).
"""

from linrec_jax.cli.train import FLAGS  # pylint: disable=unused-import
from linrec_jax.cli.train import main  # pylint: disable=unused-import
from linrec_jax.cli.train import run

if __name__ == "__main__":
  run()
