"""`python -m experiments.search`: the `linrec-search` command."""

from linrec_jax.cli.search import run

if __name__ == "__main__":
  run()
