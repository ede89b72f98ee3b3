"""Training runs side by side: learning curves, time to quality, test metrics.

Reads what the training loop leaves in a workdir, `metrics.jsonl` (one record
per epoch, rewritten at every epoch end, so a running or resumed run can be
read at any time) and, once the run has ended, `results.json`, and formats
Markdown tables that compare several runs (`experiments/compare_runs.py`).
"""

import dataclasses
import json
import os

from linrec_jax import workdir as workdir_layout
from linrec_jax.training import reporting


@dataclasses.dataclass(frozen=True)
class Run:
  """What one workdir says about its run.

  Attributes:
    name: the run's label (default: the workdir's base name).
    epochs: epochs ended so far (validated or not).
    curve: epoch -> (updates so far, validation metric), epochs in order.
    results: the parsed `results.json`, or None while the run has not ended.
    minutes: epoch -> minutes from the start of training to the end of that
      epoch's validation (the records' training `seconds` plus their
      `valid_seconds` where recorded); empty when the records hold no time.
  """

  name: str
  epochs: int
  curve: dict
  results: dict | None
  minutes: dict = dataclasses.field(default_factory=dict)


def read_run(workdir, metric, name=None):
  """Reads `metrics.jsonl` (and `results.json` if present) of a workdir.

  Args:
    workdir: a training workdir.
    metric: the validation metric to read, e.g. `ndcg@10`.
    name: the run's label; None takes the workdir's base name.

  Raises:
    FileNotFoundError: naming the missing `metrics.jsonl`.
    ValueError: naming the file, line and field at fault.
  """
  path = os.path.join(workdir, workdir_layout.METRICS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path}: no such file (not a training workdir, '
        'or no epoch has ended yet)'
    )
  curve, epochs, minutes, seconds = {}, 0, {}, 0.0
  timed = True
  with open(path) as f:
    for number, line in enumerate(f, 1):
      try:
        record = json.loads(line)
      except json.JSONDecodeError as error:
        raise ValueError(f'{path}:{number}: not JSON ({error})') from None
      for field in ('epoch', 'step'):
        if not isinstance(record.get(field), int):
          raise ValueError(
              f'{path}:{number}: field "{field}" missing or not an integer'
          )
      epochs = max(epochs, record['epoch'])
      for field in ('seconds', 'valid_seconds'):
        if field in record and not isinstance(record[field], (int, float)):
          raise ValueError(f'{path}:{number}: field "{field}" is not a number')
      timed = timed and 'seconds' in record
      seconds += record.get('seconds', 0.0) + record.get('valid_seconds', 0.0)
      if timed:
        minutes[record['epoch']] = seconds / 60
      if 'valid' not in record:  # An epoch without validation.
        continue
      if metric not in record['valid']:
        raise ValueError(
            f'{path}:{number}: field "valid.{metric}" missing; '
            f'has {sorted(record["valid"])}'
        )
      curve[record['epoch']] = (record['step'], record['valid'][metric])
  results_path = os.path.join(workdir, workdir_layout.RESULTS_FILE)
  results = None
  if os.path.exists(results_path):
    with open(results_path) as f:
      results = json.load(f)
  name = name or os.path.basename(os.path.normpath(workdir))
  return Run(
      name,
      epochs,
      dict(sorted(curve.items())),
      results,
      dict(sorted(minutes.items())),
  )


def relative(value, baseline):
  """`value / baseline - 1`, or None when either is missing."""
  if value is None or baseline is None:
    return None
  return value / baseline - 1


def first_reached(curve, threshold):
  """`(updates, epoch)` of the first epoch with value >= threshold, or None."""
  for epoch, (step, value) in curve.items():
    if value >= threshold:
      return step, epoch
  return None


def curve_rows(runs, every):
  """Epochs shown in the curve table: 1 + k * every, and each run's last."""
  lasts = {max(run.curve) for run in runs if run.curve}
  return sorted(lasts.union(range(1, max(lasts, default=0) + 1, every)))


def _cell(value, fmt):
  return '' if value is None else format(value, fmt)


def _percent(value):
  return '' if value is None else f'{100 * value:+.1f} %'


def _table(header, rows):
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return '\n'.join(lines)


def curve_table(runs, metric, every):
  """Validation `metric` by epoch with differences to the first run."""
  base, others = runs[0], runs[1:]
  header = (
      ['epoch']
      + [run.name for run in runs]
      + [f'{run.name} / {base.name}' for run in others]
  )
  rows = []
  for epoch in curve_rows(runs, every):
    values = [run.curve.get(epoch, (None, None))[1] for run in runs]
    rows.append(
        [str(epoch)]
        + [_cell(v, '.4f') for v in values]
        + [_percent(relative(v, values[0])) for v in values[1:]]
    )
  return f'Validation {metric} by epoch\n\n' + _table(header, rows)


def threshold_table(runs, metric, thresholds):
  """Updates (epoch, minutes where timed) to first reach each threshold."""
  header = [f'valid {metric} reached'] + [f'{t:g}' for t in thresholds]
  rows = []
  for run in runs:
    cells = []
    for threshold in thresholds:
      reached = first_reached(run.curve, threshold)
      if reached is None:
        cells.append('not yet')
        continue
      step, epoch = reached
      when = (
          f'{epoch}, {run.minutes[epoch]:.0f} min'
          if epoch in run.minutes
          else f'{epoch}'
      )
      cells.append(f'{step:,} ({when})')
    rows.append([run.name] + cells)
  return (
      'Updates to first reach (epoch, minutes of training and '
      'validation on the machine that ran it)\n\n' + _table(header, rows)
  )


def summary_table(runs, metric):
  """Best validation value, epochs run and test metrics of each run."""
  header = ['run', f'best valid {metric} (epoch)', 'epochs', 'state'] + [
      f'test {name}' for name in reporting.HEADLINE
  ]
  rows = []
  for run in runs:
    if run.curve:
      best = max(run.curve, key=lambda epoch: run.curve[epoch][1])
      best_cell = f'{run.curve[best][1]:.4f} ({best})'
    else:
      best_cell = ''
    if run.results is None:
      state, tests = 'running', [''] * len(reporting.HEADLINE)
    else:
      state = run.results.get('stop_reason', 'ended')
      tests = [
          _cell(run.results['test'].get(name), '.4f')
          for name in reporting.HEADLINE
      ]
    rows.append([run.name, best_cell, str(run.epochs), state] + tests)
  return 'Runs\n\n' + _table(header, rows)


def report(runs, metric, every, thresholds):
  """The three tables, as one Markdown string."""
  return (
      '\n\n'.join(
          [
              curve_table(runs, metric, every),
              threshold_table(runs, metric, thresholds),
              summary_table(runs, metric),
          ]
      )
      + '\n'
  )
