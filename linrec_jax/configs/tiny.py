"""The `tiny` preset: a few steps on a tiny model, for tests and smoke checks.

linrec-train --preset=tiny --dataset=ml-1m-sample --workdir=/tmp/smoke
"""

from linrec_jax.configs import common

VALUES = dict(
    hidden=16,
    ffn=32,
    layers=1,
    heads=2,
    dropout=0.0,
    lr=1e-3,
    batch_size=16,
    epochs=1,
    patience=1,
    max_len=20,
    train_mode="all",
    causal=True,
    mask_padding=True,
    eval_batch_size=64,
    log_every_steps=5,
    checkpoint_every_steps=5,
)

DATASET_VALUES = {}


def get_config(arg: str | None = None):
  """This preset for `arg` (see `common.parse_arg`), as a ConfigDict."""
  options = common.parse_arg(arg)
  values = dict(VALUES, **DATASET_VALUES.get(options["dataset"], {}))
  if options["model"] == "bert4rec":
    values.update(common.BERT4REC)
  return common.build(values, options)
