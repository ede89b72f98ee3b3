r"""Training runs side by side, as Markdown tables, from their workdirs.

  python -m experiments.compare_runs \
      --workdirs=runs/conv_ml1m_softmax,runs/conv_ml1m_linrec --every=4

Reads each workdir's `metrics.jsonl` (one record per epoch, rewritten by the
training loop at every epoch end, so a running or resumed run can be read at
any time) and, once the run has ended, its `results.json`. Prints three
tables, the first run being the baseline:

- the validation --metric by epoch (every --every epochs and the last), with
  each other run's relative difference to the baseline at equal epochs;
- the updates (and epoch) at which each run first reached each of
  --thresholds: time to quality, independent of the machine;
- per run: best validation value and epoch, epochs run, and the test Hit,
  NDCG and MRR at 10 when `results.json` exists ("running" otherwise).

Writes the same text to --output when given.
"""

import dataclasses
import json
import os

from absl import app
from absl import flags

_WORKDIRS = flags.DEFINE_list('workdirs', None,
                              'training workdirs; the first is the baseline')
_NAMES = flags.DEFINE_list('names', None,
                           'a label per workdir (default: base names)')
_METRIC = flags.DEFINE_string('metric', 'ndcg@10', 'validation metric')
_EVERY = flags.DEFINE_integer('every', 4, 'epochs between curve rows')
_THRESHOLDS = flags.DEFINE_list('thresholds', ['0.08', '0.10', '0.12'],
                                'validation values for time to quality')
_OUTPUT = flags.DEFINE_string('output', None, 'Markdown path (optional)')
flags.mark_flag_as_required('workdirs')

TEST_METRICS = ('hit@10', 'ndcg@10', 'mrr@10')


@dataclasses.dataclass(frozen=True)
class Run:
  """What one workdir says about its run.

  Attributes:
    name: the run's label (default: the workdir's base name).
    curve: epoch -> (updates so far, validation metric), epochs in order.
    results: the parsed `results.json`, or None while the run has not ended.
  """
  name: str
  curve: dict
  results: dict | None


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
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: no such file (not a training workdir, '
                            'or no epoch has ended yet)')
  curve = {}
  with open(path) as f:
    for number, line in enumerate(f, 1):
      try:
        record = json.loads(line)
      except json.JSONDecodeError as error:
        raise ValueError(f'{path}:{number}: not JSON ({error})') from None
      for field in ('epoch', 'step'):
        if not isinstance(record.get(field), int):
          raise ValueError(f'{path}:{number}: field "{field}" missing or '
                           'not an integer')
      if 'valid' not in record:  # An epoch without validation.
        continue
      if metric not in record['valid']:
        raise ValueError(f'{path}:{number}: field "valid.{metric}" missing; '
                         f'has {sorted(record["valid"])}')
      curve[record['epoch']] = (record['step'], record['valid'][metric])
  results_path = os.path.join(workdir, 'results.json')
  results = None
  if os.path.exists(results_path):
    with open(results_path) as f:
      results = json.load(f)
  name = name or os.path.basename(os.path.normpath(workdir))
  return Run(name, dict(sorted(curve.items())), results)


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
  last = max((max(run.curve) for run in runs if run.curve), default=0)
  epochs = set(range(1, last + 1, every))
  epochs.update(max(run.curve) for run in runs if run.curve)
  return sorted(epochs)


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
  header = (['epoch'] + [run.name for run in runs]
            + [f'{run.name} / {base.name}' for run in others])
  rows = []
  for epoch in curve_rows(runs, every):
    values = [run.curve.get(epoch, (None, None))[1] for run in runs]
    rows.append([str(epoch)] + [_cell(v, '.4f') for v in values]
                + [_percent(relative(v, values[0])) for v in values[1:]])
  return f'Validation {metric} by epoch\n\n' + _table(header, rows)


def threshold_table(runs, metric, thresholds):
  """Updates (epoch) to first reach each threshold."""
  header = [f'valid {metric} reached'] + [f'{t:g}' for t in thresholds]
  rows = []
  for run in runs:
    cells = []
    for threshold in thresholds:
      reached = first_reached(run.curve, threshold)
      cells.append('not yet' if reached is None
                   else f'{reached[0]:,} ({reached[1]})')
    rows.append([run.name] + cells)
  return 'Updates to first reach (epoch)\n\n' + _table(header, rows)


def summary_table(runs, metric):
  """Best validation value, epochs run and test metrics of each run."""
  header = (['run', f'best valid {metric} (epoch)', 'epochs', 'state']
            + [f'test {name}' for name in TEST_METRICS])
  rows = []
  for run in runs:
    if run.curve:
      best = max(run.curve, key=lambda epoch: run.curve[epoch][1])
      best_cell = f'{run.curve[best][1]:.4f} ({best})'
    else:
      best_cell = ''
    if run.results is None:
      state, tests = 'running', [''] * len(TEST_METRICS)
    else:
      state = run.results.get('stop_reason', 'ended')
      tests = [_cell(run.results['test'].get(name), '.4f')
               for name in TEST_METRICS]
    rows.append([run.name, best_cell, str(len(run.curve)), state] + tests)
  return 'Runs\n\n' + _table(header, rows)


def report(runs, metric, every, thresholds):
  """The three tables, as one Markdown string."""
  return '\n\n'.join([curve_table(runs, metric, every),
                      threshold_table(runs, metric, thresholds),
                      summary_table(runs, metric)]) + '\n'


def main(argv):
  del argv
  if _EVERY.value < 1:
    raise app.UsageError(f'--every must be positive, got {_EVERY.value}')
  try:
    thresholds = [float(t) for t in _THRESHOLDS.value]
  except ValueError:
    raise app.UsageError(f'--thresholds must be numbers, got '
                         f'{",".join(_THRESHOLDS.value)}') from None
  names = _NAMES.value or [None] * len(_WORKDIRS.value)
  if len(names) != len(_WORKDIRS.value):
    raise app.UsageError(f'--names has {len(names)} labels for '
                         f'{len(_WORKDIRS.value)} --workdirs')
  runs = [read_run(workdir, _METRIC.value, name)
          for workdir, name in zip(_WORKDIRS.value, names)]
  text = report(runs, _METRIC.value, _EVERY.value, thresholds)
  print(text, end='')
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  app.run(main)
