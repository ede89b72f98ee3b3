r"""One epoch of the `cpu` preset on ML-1M: padded batches vs length buckets.

Both loaders hold every 200-item window of each ML-1M history (the `cpu`
preset's training set); `--length_bucket=W` groups rows of similar length
and crops each batch to a multiple of W, which removes most of the padding
(43 % of the positions of padded batches). For each layout this times the
jitted training step (forward with dropout, backward, Adam) of the preset's
SASRec on `--sample` batches of an epoch drawn at random (the same indices
for both), in round-robin passes so that varying load from other processes
hits both alike, after compiling every batch width once. An epoch's time is
the mean step time times the batches per epoch; the ratio of the two is the
figure. Positions counted are the padded slots each layout computes.

  python -m experiments.benchmark_epoch --output=benchmarks/epoch_cpu.json
"""

import json
import statistics
import time

from absl import app
from absl import flags
import jax
import numpy as np

from data_prep import datasets
from linrec_jax import configs
from linrec_jax import data
from linrec_jax import models
from linrec_jax.cli import bench_common

_ATTENTIONS = flags.DEFINE_list(
    'attentions', ['linrec', 'softmax'], 'Attention variants.'
)
_BUCKET = flags.DEFINE_integer('length_bucket', 25, 'Bucket width W.')
_SAMPLE = flags.DEFINE_integer('sample', 16, 'Batches timed per layout.')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Timed passes per batch.')
_DATA_ROOT = flags.DEFINE_string('data_root', None, 'raw datasets')
_PREPARED = flags.DEFINE_string('prepared_root', 'prepared', 'prepared arrays')
_OUTPUT = flags.DEFINE_string(
    'output', 'benchmarks/epoch_cpu.json', 'Where the JSON report goes.'
)


def _time(step, state, batch, rng):
  start = time.perf_counter()
  state, out = step(state, batch, rng)
  jax.block_until_ready(out)
  return time.perf_counter() - start, state


def measure(seqs, attention, bucket, sample, repeats):
  """Per-layout step times, epoch estimates and padded slots."""
  config = configs.to_train_config(
      configs.get_config(
          'cpu', dataset='ml-1m', model='sasrec', attention=attention
      )
  )
  model = models.make_model(config, seqs.num_items)
  state, step = bench_common.train_setup(model, seqs.num_items, lr=config.lr)
  rng = jax.random.key(1)
  loaders = {
      name: data.TrainBatches(
          seqs,
          mode='all',
          max_len=config.max_len,
          batch_size=config.batch_size,
          seed=config.seed,
          windows_per_user=config.windows_per_user,
          length_bucket=width,
      )
      for name, width in (('padded', 0), ('bucketed', bucket))
  }
  batches = loaders['padded'].num_batches
  picked = np.random.default_rng(0).choice(batches, sample, replace=False)
  report = {}
  for name, loader in loaders.items():
    epoch = [loader.batch(0, i) for i in range(batches)]
    widths = sorted({b['inputs'].shape[1] for b in epoch})
    for width in widths:  # Compile every shape before timing.
      _, state = _time(
          step,
          state,
          next(b for b in epoch if b['inputs'].shape[1] == width),
          rng,
      )
    report[name] = {
        'widths': widths,
        'slots_per_epoch': int(sum(b['inputs'].size for b in epoch)),
        'real_targets_per_epoch': int(
            sum((b['targets'] != 0).sum() for b in epoch)
        ),
        'times': [],
    }
  for _ in range(repeats):
    for index in picked:
      for name, loader in loaders.items():
        seconds, state = _time(step, state, loader.batch(0, int(index)), rng)
        report[name]['times'].append(seconds)
  for name, entry in report.items():
    entry['mean_step_s'] = statistics.fmean(entry.pop('times'))
    entry['epoch_s'] = entry['mean_step_s'] * batches
  report['batches_per_epoch'] = batches
  report['speedup'] = (
      report['padded']['epoch_s'] / report['bucketed']['epoch_s']
  )
  return report


def main(argv):
  del argv
  data_dir = datasets.prepared_dir('ml-1m', _DATA_ROOT.value, _PREPARED.value)
  seqs = data.load(data_dir)
  result = {
      'machine': bench_common.machine(),
      'what': __doc__.split('\n\n')[1].replace('\n', ' '),
      'length_bucket': _BUCKET.value,
      'sample': _SAMPLE.value,
      'repeats': _REPEATS.value,
      'cells': {},
  }
  for attention in _ATTENTIONS.value:
    cell = measure(
        seqs, attention, _BUCKET.value, _SAMPLE.value, _REPEATS.value
    )
    result['cells'][attention] = cell
    print(
        f"{attention}: padded {cell['padded']['epoch_s']:.0f} s/epoch, "
        f"buckets of {_BUCKET.value} {cell['bucketed']['epoch_s']:.0f} "
        f"s/epoch, {cell['speedup']:.2f}x (slots "
        f"{cell['padded']['slots_per_epoch']} -> "
        f"{cell['bucketed']['slots_per_epoch']})",
        flush=True,
    )
  result['load_avg_at_end'] = bench_common.load_avg()
  with open(_OUTPUT.value, 'w') as f:
    json.dump(result, f, indent=2)
  print(f'wrote {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
