r"""Training runs side by side, as Markdown tables, from their workdirs.

  python -m experiments.compare_runs \
      --workdirs=runs/conv_ml1m_softmax,runs/conv_ml1m_linrec --every=4

Reads each workdir's `metrics.jsonl` and, once the run has ended, its
`results.json` (`linrec_jax.analysis.run_comparison`; running runs can be read too).
Prints three tables, the first run being the baseline:

- the validation --metric by epoch (every --every epochs and the last), with
  each other run's relative difference to the baseline at equal epochs;
- the updates (and epoch, and minutes of training plus validation where the
  records are timed) at which each run first reached each of --thresholds:
  time to quality (updates do not depend on the machine, minutes do);
- per run: best validation value and epoch, epochs run, and the test Hit,
  NDCG and MRR at 10 when `results.json` exists ("running" otherwise).

Writes the same text to --output when given.
"""

from absl import app
from absl import flags

from linrec_jax.analysis import run_comparison

_WORKDIRS = flags.DEFINE_list(
    'workdirs', None, 'training workdirs; the first is the baseline'
)
_NAMES = flags.DEFINE_list(
    'names', None, 'a label per workdir (default: base names)'
)
_METRIC = flags.DEFINE_string('metric', 'ndcg@10', 'validation metric')
_EVERY = flags.DEFINE_integer('every', 4, 'epochs between curve rows')
_THRESHOLDS = flags.DEFINE_list(
    'thresholds',
    ['0.12', '0.14', '0.16'],
    'validation values for time to quality',
)
_OUTPUT = flags.DEFINE_string('output', None, 'Markdown path (optional)')
flags.mark_flag_as_required('workdirs')


def main(argv):
  del argv
  if _EVERY.value < 1:
    raise app.UsageError(f'--every must be positive, got {_EVERY.value}')
  try:
    thresholds = [float(t) for t in _THRESHOLDS.value]
  except ValueError:
    raise app.UsageError(
        f'--thresholds must be numbers, got {",".join(_THRESHOLDS.value)}'
    ) from None
  names = _NAMES.value or [None] * len(_WORKDIRS.value)
  if len(names) != len(_WORKDIRS.value):
    raise app.UsageError(
        f'--names has {len(names)} labels for '
        f'{len(_WORKDIRS.value)} --workdirs'
    )
  runs = [
      run_comparison.read_run(workdir, _METRIC.value, name)
      for workdir, name in zip(_WORKDIRS.value, names)
  ]
  text = run_comparison.report(runs, _METRIC.value, _EVERY.value, thresholds)
  print(text, end='')
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  app.run(main)
