"""The `cpu` preset: sized to finish on a 2-core CPU in about 30 minutes.

A causal encoder trained on every position of every 200-item window of each
history (ML-1M).

  linrec-train --preset=cpu --dataset=ml-1m --workdir=runs/a
  linrec-train --config=linrec_jax/configs/cpu.py:dataset=ml-1m --workdir=...
"""

from linrec_jax.configs import common

VALUES = dict(
    hidden=64,
    ffn=128,
    layers=2,
    heads=4,
    dropout=0.2,
    lr=2e-3,
    batch_size=128,
    epochs=12,
    patience=3,
    seed=2000,
    train_mode="all",
    windows_per_user=0,
    pad_side="right",
    causal=True,
    mask_padding=True,
    loss="ce",
    lr_schedule="cosine",
    warmup_steps=100,
)

# Per-dataset values of this preset (LINREC_NOTES §3).
DATASET_VALUES = {
    "ml-1m": dict(max_len=200),
    "gowalla": dict(
        max_len=100, batch_size=256, loss="sampled", num_negatives=512
    ),
    "ml-1m-sample": dict(max_len=200, batch_size=64),
}

# BERT4Rec's cloze task needs many more updates than SASRec's next-item task
# (the ML-1M loss sits at the popularity level for ~400 steps), so no decay
# and no early stop after a few epochs: RecBole's constant lr 1e-3,
# patience 10.
BERT4REC = dict(
    lr=1e-3, lr_schedule="constant", warmup_steps=0, epochs=60, patience=10
)


def get_config(arg: str | None = None):
  """This preset for `arg` (see `common.parse_arg`), as a ConfigDict."""
  options = common.parse_arg(arg)
  values = dict(VALUES, **DATASET_VALUES.get(options["dataset"], {}))
  if options["model"] == "bert4rec":
    values.update(common.BERT4REC, **BERT4REC)
  return common.build(values, options)
