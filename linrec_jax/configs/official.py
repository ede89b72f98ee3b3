"""The `official` preset: the paper's configuration, meant for an accelerator.

LinRec as the authors run it (LINREC_NOTES §3): hidden 128, 8 heads, batch
2048, non-causal, no padding mask, prefix samples. Softmax keeps the causal
and padding masks, as the official code (RecBole) does.

  linrec-train --preset=official --dataset=ml-1m --workdir=runs/c
"""

from linrec_jax.configs import common

VALUES = dict(
    hidden=128,
    ffn=256,
    layers=2,
    heads=8,
    dropout=0.2,
    lr=1e-3,
    batch_size=2048,
    epochs=100,
    patience=10,
    seed=2000,
    train_mode="prefix",
    pad_side="right",
    causal=False,
    mask_padding=False,
    loss="ce",
    lr_schedule="constant",
    warmup_steps=0,
)

DATASET_VALUES = {
    "ml-1m": dict(max_len=200),
    "gowalla": dict(max_len=100, batch_size=512),
}

# What the official code does for softmax SASRec (RecBole): causal and
# padding masks, unlike LinRec's unmasked linear path.
SOFTMAX = dict(causal=True, mask_padding=True)


def get_config(arg: str | None = None):
  """This preset for `arg` (see `common.parse_arg`), as a ConfigDict."""
  options = common.parse_arg(arg)
  values = dict(VALUES, **DATASET_VALUES.get(options["dataset"], {}))
  if options["attention"] == "softmax":
    values.update(SOFTMAX)
  if options["model"] == "bert4rec":
    values.update(common.BERT4REC)
  return common.build(values, options)
