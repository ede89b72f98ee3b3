"""The peer benchmark's table, ratios and plot, from its measured records.

A record is a dict with `impl` (a key of `LABELS`), `n`, `batch`, `status`
('ok' or why not), and for 'ok' `seconds` (median step) and `peak_rss_gib`;
JAX records may add `gflops_per_s` and `share_of_matmul_peak`.
"""

import math

LABELS = {
    'recbole_linrec': 'RecBole + LinRec',
    'recbole_softmax': 'RecBole softmax',
    'jax_linrec': 'linrec_jax linrec',
    'jax_softmax': 'linrec_jax softmax',
    'jax_linrec_causal': 'linrec_jax causal linrec',
}
# (ours, peer) pairs compared in the ratios.
PAIRS = {
    'linrec': ('jax_linrec', 'recbole_linrec'),
    'softmax': ('jax_softmax', 'recbole_softmax'),
}
# (causal, non-causal): what causality costs linrec_jax's LinRec step.
CAUSAL = ('jax_linrec_causal', 'jax_linrec')
DOES_NOT_FIT = 'does_not_fit'


def by_cell(records):
  """`{(n, batch): {impl: record}}`, cells in the order first measured."""
  cells = {}
  for r in records:
    cells.setdefault((r['n'], r['batch']), {})[r['impl']] = r
  return cells


def _both_ok(impls, first, second):
  """`(record of first, record of second)` from one cell's `{impl: record}`
  when both measured 'ok', else None."""
  a, b = impls.get(first), impls.get(second)
  return (a, b) if a and b and a['status'] == b['status'] == 'ok' else None


def ratios(records):
  """Per cell and pair: peer time / our time and our memory / peer memory.

  Returns:
    A list of dicts `n`, `batch`, `pair`, `speedup` (> 1: linrec_jax is
    faster) and `memory_ratio` (< 1: linrec_jax needs less peak RSS), for
    the pairs where both sides measured 'ok'.
  """
  out = []
  for (n, batch), impls in by_cell(records).items():
    for pair, (ours, peer) in PAIRS.items():
      if both := _both_ok(impls, ours, peer):
        a, b = both
        out.append(
            dict(
                n=n,
                batch=batch,
                pair=pair,
                speedup=b['seconds'] / a['seconds'],
                memory_ratio=a['peak_rss_gib'] / b['peak_rss_gib'],
            )
        )
  return out


def causal_costs(records):
  """Per cell: causal LinRec's step time and peak RSS over non-causal's.

  Returns:
    A list of dicts `n`, `batch`, `time_ratio` (> 1: the causal step is
    slower) and `memory_ratio`, for the cells where both measured 'ok'.
  """
  out = []
  for (n, batch), impls in by_cell(records).items():
    if both := _both_ok(impls, *CAUSAL):
      a, b = both
      out.append(
          dict(
              n=n,
              batch=batch,
              time_ratio=a['seconds'] / b['seconds'],
              memory_ratio=a['peak_rss_gib'] / b['peak_rss_gib'],
          )
      )
  return out


def describe(record):
  """'1.61 s, 2.52 GiB', or what kept the cell from a result."""
  if record is None:
    return ''
  if record['status'] == 'ok':
    return f'{record["seconds"]:.3g} s, {record["peak_rss_gib"]:.2f} GiB'
  if record['status'] == DOES_NOT_FIT:
    return 'does not fit'
  return record['status'].replace('_', ' ')


def _flops(record):
  if not record or 'gflops_per_s' not in record:
    return ''
  return (
      f'{record["gflops_per_s"]:.0f} '
      f'({100 * record["share_of_matmul_peak"]:.0f} %)'
  )


def markdown_table(records):
  """The cells as a Markdown table, times, memory and ratios."""
  impls = list(LABELS)
  head = (
      ['N, batch', 'padding']
      + [LABELS[i] for i in impls]
      + [
          'linrec: speedup, memory',
          'softmax: speedup, memory',
          'causal linrec / linrec: time, memory',
          'linrec_jax linrec GFLOP/s (% peak)',
          'linrec_jax softmax GFLOP/s (% peak)',
      ]
  )
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  found = {(q['n'], q['batch'], q['pair']): q for q in ratios(records)}
  causal = {(c['n'], c['batch']): c for c in causal_costs(records)}
  for (n, batch), cell in by_cell(records).items():
    padding = next(
        (r['padding_share'] for r in cell.values() if 'padding_share' in r),
        math.nan,
    )
    row = [f'{n}, {batch}', f'{100 * padding:.0f} %']
    row += [describe(cell.get(i)) for i in impls]
    for pair in PAIRS:
      q = found.get((n, batch, pair))
      row.append(f'{q["speedup"]:.2f}x, {q["memory_ratio"]:.2f}x' if q else '')
    c = causal.get((n, batch))
    row.append(f'{c["time_ratio"]:.2f}x, {c["memory_ratio"]:.2f}x' if c else '')
    row += [_flops(cell.get('jax_linrec')), _flops(cell.get('jax_softmax'))]
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines)


def cpu_table(records):
  """Median CPU seconds per step (the process, all threads) per cell."""
  head = ['N, batch'] + list(LABELS.values())
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for (n, batch), cell in by_cell(records).items():
    row = [f'{n}, {batch}']
    for impl in LABELS:
      r = cell.get(impl)
      row.append(
          f'{r["cpu_seconds"]:.3g} s'
          if r and 'cpu_seconds' in r
          else describe(r)
      )
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines)


def plot(records, path, *, title):
  """Two bar charts side by side: median step time and peak RSS per cell.

  Missing bars are cells that did not run to the end; their status is
  written where the bar would be.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  cells = by_cell(records)
  impls = [i for i in LABELS if any(i in c for c in cells.values())]
  width = 0.8 / max(len(impls), 1)
  fig, axes = plt.subplots(1, 2, figsize=(13, 5))
  panels = [
      (
          'seconds',
          'median step time (s), log scale',
          'Training step (fwd + bwd + Adam), median after warm-up',
      ),
      (
          'peak_rss_gib',
          'process peak RSS (GiB)',
          "Peak RSS of the cell's process (runtime included)",
      ),
  ]
  for ax, (field, ylabel, panel_title) in zip(axes, panels):
    labelled = set()
    for k, impl in enumerate(impls):
      for x, cell in enumerate(cells.values()):
        r = cell.get(impl)
        if r is None:
          continue
        pos = x + (k - (len(impls) - 1) / 2) * width
        if r['status'] == 'ok':
          ax.bar(
              pos,
              r[field],
              width,
              color=f'C{k}',
              label=None if impl in labelled else LABELS[impl],
          )
          labelled.add(impl)
          ax.annotate(
              f'{r[field]:.3g}',
              (pos, r[field]),
              ha='center',
              va='bottom',
              fontsize=7,
          )
        else:
          ax.annotate(
              describe(r),
              (pos, 0),
              xycoords=('data', 'axes fraction'),
              ha='center',
              va='bottom',
              rotation=90,
              fontsize=7,
              color=f'C{k}',
          )
    ax.set_xticks(range(len(cells)), [f'N={n}\nbatch {b}' for n, b in cells])
    top = max(
        (
            r[field]
            for c in cells.values()
            for r in c.values()
            if r['status'] == 'ok'
        ),
        default=1.0,
    )
    if field == 'seconds':
      ax.set_yscale('log')
      ax.set_ylim(top=top * 6)  # Room for the legend above the bars.
    else:
      ax.set_ylim(0, top * 1.35)
    ax.set(ylabel=ylabel, title=panel_title)
    ax.grid(True, axis='y', which='both', alpha=0.3)
    ax.legend(fontsize='small', loc='upper left', ncols=2)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
