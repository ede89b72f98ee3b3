"""`python -m experiments.recommend`: the `linrec-recommend` command.

The program lives in `linrec_jax.cli.recommend` (installed with the package).
"""

from linrec_jax.cli.recommend import FLAGS  # pylint: disable=unused-import
from linrec_jax.cli.recommend import load_titles  # pylint: disable=unused-import
from linrec_jax.cli.recommend import main  # pylint: disable=unused-import
from linrec_jax.cli.recommend import recommend  # pylint: disable=unused-import
from linrec_jax.cli.recommend import run
from linrec_jax.serving.recommend import format_results  # pylint: disable=unused-import

if __name__ == "__main__":
  run()
