"""The learning curve of a run: its per-epoch records drawn as one PNG.

Every numeric validation metric of the records is drawn, whatever its name:
metrics are grouped into panels by name without the cutoff and the protocol
(`ndcg@10`, `ndcg@20` and `ndcg@10_nohist` share the panel `ndcg`; history
kept is drawn solid, history excluded dashed in the cutoff's colour; nested
dicts are flattened to `outer/inner` names).
"""

import re

from linrec_jax.metrics import HISTORY_EXCLUDED

_CUTOFF = re.compile(r"@(\d+)")
# The legend label's suffix for a metric with the history excluded.
_EXCLUDED_LABEL = " excluded"


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
  """The panel and legend label of a metric, both protocols in one panel.

  `"ndcg@10"` -> `("ndcg", "@10")`; `"ndcg@10_nohist"` ->
  `("ndcg", "@10 excluded")`; no cutoff: `(name, name)`.
  """
  match = _CUTOFF.search(name)
  if not match:
    return name, name
  panel = name[: match.start()] + name[match.end() :]
  if panel.endswith(HISTORY_EXCLUDED):
    return panel[: -len(HISTORY_EXCLUDED)], match.group(0) + _EXCLUDED_LABEL
  return panel, match.group(0)


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
  # A Figure of its own, not pyplot: the caller's backend and figures are
  # left alone.
  from matplotlib import figure  # pylint: disable=import-outside-toplevel
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
  cols = min(3, len(panels))
  rows = -(-len(panels) // cols)
  width, height = 4.6 * cols, 3.2 * rows + 0.6
  fig = figure.Figure(figsize=(width, height))
  # Fixed margins in inches (tight_layout would measure every label first,
  # which costs as much as drawing the figure again).
  fig.subplots_adjust(
      left=0.6 / width,
      right=1 - 0.2 / width,
      bottom=0.5 / height,
      top=1 - 0.9 / height,
      wspace=0.25,
      hspace=0.45,
  )
  axes = fig.subplots(rows, cols, squeeze=False)
  for ax, (panel, series) in zip(axes.flat, panels.items()):
    colours = {}
    for label, points in sorted(series.items(), key=_by_cutoff):
      excluded = label.endswith(_EXCLUDED_LABEL)
      cutoff = label.removesuffix(_EXCLUDED_LABEL)
      colour = colours.setdefault(cutoff, f"C{len(colours)}")
      ax.plot(
          *zip(*points),
          marker="o",
          markersize=3,
          color=colour,
          linestyle="--" if excluded else "-",
          label=label,
      )
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
  fig.suptitle(
      title + "\nsolid: history kept in the ranking; dashed: excluded",
      fontsize=9,
      wrap=True,
  )
  fig.savefig(path, dpi=100)


def _by_cutoff(item):
  match = _CUTOFF.search(item[0])
  return (int(match.group(1)) if match else 0, item[0])
