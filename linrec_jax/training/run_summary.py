"""A few console lines saying what a run is, where the full record lies."""


def _get(config: dict, name: str, default="?"):
  return config.get(name, default)


def loss_definition(config: dict) -> str:
  """What the `train loss` on the console and in metrics.jsonl is."""
  if _get(config, "loss") == "sampled":
    what = (
        f"sampled-softmax cross-entropy (target against "
        f"{_get(config, 'num_negatives')} uniform negatives)"
    )
  else:
    what = "cross-entropy over all items"
  return (
      f"train loss: the running mean, over this epoch's steps so far, of "
      f"the per-target {what}"
  )


def summary_lines(record: dict, workdir: str) -> list[str]:
  """The configuration in five lines (config.json holds every field).

  Args:
    record: what `workdir/config.json` holds: `config` (the TrainConfig
      fields) plus the caller's run information (`dataset`, `preset`,
      `flags`) and `data_dir`.
    workdir: the run's directory.
  """
  config = record.get("config", {})
  changed = record.get("flags") or {}
  flags = ", ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "none"
  direction = "causal" if _get(config, "causal", False) else "bidirectional"
  schedule = _get(config, "lr_schedule")
  if _get(config, "warmup_steps", 0):
    schedule += f" after {config['warmup_steps']} warm-up steps"
  loss = _get(config, "loss")
  if _get(config, "loss_normalizer", "batch") == "epoch":
    loss += " (sum over the epoch's mean targets per batch)"
  if _get(config, "length_bucket", 0):
    loss += f", length buckets of {config['length_bucket']}"
  if _get(config, "eval_protocol") == "full":
    # Full ranking computes both protocols; the flag picks the one that
    # early stopping reads.
    picked = "excluded" if _get(config, "exclude_history", False) else "kept"
    history = f"history kept and excluded (early stop on history {picked})"
  else:
    history = "history kept"
  return [
      f"run: dataset {record.get('dataset', '?')} "
      f"({record.get('data_dir', '?')}), preset {record.get('preset', '?')}, "
      f"set by flags: {flags}",
      f"model: {_get(config, 'model')} ({direction}), attention "
      f"{_get(config, 'attention')}, hidden {_get(config, 'hidden')}, "
      f"layers {_get(config, 'layers')}, heads {_get(config, 'heads')}, "
      f"max_len {_get(config, 'max_len')}",
      f"training: mode {_get(config, 'train_mode')}, loss {loss}, batch {_get(config, 'batch_size')}, lr "
      f"{_get(config, 'lr')} {schedule}, up to {_get(config, 'epochs')} "
      f"epochs (patience {_get(config, 'patience')})",
      f"evaluation: {_get(config, 'eval_protocol')} ranking, {history}",
      f"workdir: {workdir} (config.json holds the full configuration; "
      f"console.log, metrics.jsonl, tensorboard/, checkpoints/)",
  ]
