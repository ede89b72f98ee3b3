"""`python -m experiments.benchmark`: the `linrec-benchmark` command.

The program lives in `linrec_jax.cli.benchmark` (installed with the package).
"""

from linrec_jax.cli.benchmark import main  # pylint: disable=unused-import
from linrec_jax.cli.benchmark import run

if __name__ == "__main__":
  run()
