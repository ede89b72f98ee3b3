"""The learning curve of a run: its per-epoch records drawn as one PNG.

Every numeric validation metric of the records is drawn, whatever its name:
metrics are grouped into panels by name without the cutoff (`ndcg@10` and
`ndcg@20` share the panel `ndcg`; `ndcg@10_nohist` goes to `ndcg_nohist`;
nested dicts are flattened to `outer/inner` names).
"""

import re

_CUTOFF = re.compile(r"@(\d+)")


def numeric_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
  """The numeric leaves of a (possibly nested) metrics dict, flattened.

  `{"ndcg@10": 0.1, "nohist": {"ndcg@10": 0.2}, "note": "x"}` ->
  `{"ndcg@10": 0.1, "nohist/ndcg@10": 0.2}` (booleans and text are left out).
  """
  flat = {}
  for name, value in metrics.items():
    key = f"{prefix}{name}"
    if isinstance(value, dict):
      flat.update(numeric_metrics(value, key + "/"))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      flat[key] = float(value)
  return flat


def panel_of(name: str) -> tuple[str, str]:
  """`"ndcg@10_nohist"` -> `("ndcg_nohist", "@10")`; no cutoff: `(name, name)`."""
  match = _CUTOFF.search(name)
  if not match:
    return name, name
  return name[: match.start()] + name[match.end() :], match.group(0)


def plot(
    history: list[dict], path: str, *, title: str, best_epoch: int | None = None
) -> None:
  """Draws train loss and every validation metric against the epoch.

  Args:
    history: the records of `metrics.jsonl` (`epoch`, `train_loss`, and
      `valid` on evaluated epochs).
    path: the PNG to write.
    title: the figure title (e.g. the workdir and configuration).
    best_epoch: marked with a dotted line in every panel.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  from matplotlib import ticker  # pylint: disable=import-outside-toplevel

  panels = {
      "train loss": {
          "loss": [
              (r["epoch"], r["train_loss"])
              for r in history
              if "train_loss" in r
          ]
      }
  }
  for record in history:
    for name, value in numeric_metrics(record.get("valid", {})).items():
      panel, series = panel_of(name)
      panels.setdefault(f"valid {panel}", {}).setdefault(series, []).append(
          (record["epoch"], value)
      )
  cols = min(4, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(
      rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False
  )
  for ax, (panel, series) in zip(axes.flat, panels.items()):
    for label, points in sorted(series.items(), key=_by_cutoff):
      if points:
        ax.plot(*zip(*points), marker="o", markersize=3, label=label)
    if best_epoch and best_epoch > 0:
      ax.axvline(best_epoch, color="gray", linestyle=":", label="best epoch")
    ax.set_title(panel, fontsize=10)
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=8)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.legend(fontsize=7)
  for ax in list(axes.flat)[len(panels) :]:
    ax.axis("off")
  fig.suptitle(title, fontsize=9, wrap=True)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _by_cutoff(item):
  match = _CUTOFF.search(item[0])
  return (int(match.group(1)) if match else 0, item[0])
