"""Datasets and hyperparameter presets selected by short names.

A run's configuration is `TrainConfig()` <- the preset <- the dataset's
values for that preset <- explicit flags (each step overrides the last).
"""

# name -> where its raw files lie under LINREC_DATA_DIR (preparation options
# come from `data_prep.presets`).
DATASETS = {
    "ml-1m": "ml-1m/ml-1m.txt.gz",
    "ml-1m-sample": "ml-1m-sample/ml-1m.txt",
    "gowalla": "gowalla",
}

# The paper's configuration (LINREC_NOTES §3): meant for an accelerator.
# LinRec as the authors run it: non-causal, no padding mask, prefix samples.
OFFICIAL = dict(
    hidden=128, ffn=256, layers=2, heads=8, dropout=0.2, lr=1e-3,
    batch_size=2048, epochs=100, patience=10, seed=2000, train_mode="prefix",
    pad_side="right", causal=False, mask_padding=False, loss="ce",
    lr_schedule="constant", warmup_steps=0)

# Sized to finish on a 2-core CPU in about 30 minutes on ML-1M: causal
# encoder trained on every position of every 200-item window of each history.
CPU = dict(
    hidden=64, ffn=128, layers=2, heads=4, dropout=0.2, lr=2e-3,
    batch_size=128, epochs=12, patience=3, seed=2000, train_mode="all",
    windows_per_user=0, pad_side="right", causal=True, mask_padding=True,
    loss="ce", lr_schedule="cosine", warmup_steps=100)

# A few steps on a tiny model: for tests and smoke checks.
TINY = dict(
    hidden=16, ffn=32, layers=1, heads=2, dropout=0.0, lr=1e-3,
    batch_size=16, epochs=1, patience=1, max_len=20, train_mode="all",
    causal=True, mask_padding=True, eval_batch_size=64, log_every_steps=5,
    checkpoint_every_steps=5)

PRESETS = {"cpu": CPU, "official": OFFICIAL, "tiny": TINY}

# Per-dataset values of each preset (LINREC_NOTES §3).
DATASET_PRESETS = {
    ("ml-1m", "official"): dict(max_len=200),
    ("ml-1m", "cpu"): dict(max_len=200),
    ("gowalla", "official"): dict(max_len=100, batch_size=512),
    ("gowalla", "cpu"): dict(max_len=100, batch_size=256, loss="sampled",
                             num_negatives=512),
    ("ml-1m-sample", "cpu"): dict(max_len=200, batch_size=64),
}

# BERT4Rec on a CPU: the cloze task needs many more updates than SASRec's
# next-item task (the ML-1M loss sits at the popularity level for ~400
# steps), so no decay and no early stop after a few epochs: RecBole's
# constant lr 1e-3, patience 10.
CPU_BERT4REC = dict(lr=1e-3, lr_schedule="constant", warmup_steps=0,
                    epochs=60, patience=10)

# What the official code does for softmax SASRec (RecBole): causal and
# padding masks, unlike LinRec's unmasked linear path.
OFFICIAL_SOFTMAX = dict(causal=True, mask_padding=True)


def preset_values(preset: str, dataset: str, model: str,
                  attention: str) -> dict:
  """The preset's values for this dataset, model and attention."""
  values = dict(PRESETS[preset])
  values.update(DATASET_PRESETS.get((dataset, preset), {}))
  if preset == "official" and attention == "softmax":
    values.update(OFFICIAL_SOFTMAX)
  if model == "bert4rec":
    values.update(causal=False, train_mode="cloze")
    if preset == "cpu":
      values.update(CPU_BERT4REC)
  return values
