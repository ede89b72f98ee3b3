"""Layering: serving a trained model does not load the training loop."""

import subprocess
import sys

TRAINING = ("linrec_jax.train", "linrec_jax.steps", "linrec_jax.sharding",
            "linrec_jax.optimizer")


def test_serving_imports_no_training_module():
  code = ("import sys; import linrec_jax.restore, linrec_jax.cli.recommend; "
          f"print(sorted(m for m in {TRAINING!r} if m in sys.modules))")
  process = subprocess.run([sys.executable, "-c", code], capture_output=True,
                           text=True, check=True, timeout=300)
  assert process.stdout.strip() == "[]", process.stdout
