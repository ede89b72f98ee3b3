r"""BERT4Rec training step: scoring every position vs only the masked ones.

A cloze batch masks about a fifth of each window; only those positions
carry a loss. Scoring all N positions against the catalogue (T = N, PAD_ID
targets elsewhere) and scoring only the masked ones (T = RecBole's
int(mask_prob * N), as `linrec_jax.data.TrainBatches` does) give the same
loss and gradient; this measures what the second saves. For each attention
variant, both layouts of the same batch run the jitted training step
(forward with dropout, backward, Adam update) from the same state, in
round-robin passes so that varying load from other processes hits both
alike; `seconds` is the median. The masked layout also computes the last
block at the masked rows alone (`layers.encoder`), so its dropout masks
there differ from the other's: the losses are therefore recorded from one
more step of each layout without dropout, and must agree.

Random full-length histories of ML-1M's item count; the model size of the
`cpu` preset by default.

  python -m experiments.benchmark_cloze --output=benchmarks/cloze_cpu.json
"""

import statistics
import time

from absl import app
from absl import flags
import jax
import numpy as np

from linrec_jax import data
from linrec_jax.cli import bench_common
from linrec_jax.cli import failures
from linrec_jax.cli import flag_checks
from linrec_jax.constants import PAD_ID
from linrec_jax.layers.config import EncoderConfig
from linrec_jax.models.bert4rec import BERT4Rec

_ATTENTIONS = flags.DEFINE_list(
    'attentions', ['softmax', 'linrec'], 'Attention variants.'
)
_NUM_ITEMS = flags.DEFINE_integer('num_items', 3416, 'Catalogue size.')
_MAX_LEN = flags.DEFINE_integer('max_len', 200, 'Window length N.')
_BATCH = flags.DEFINE_integer('batch_size', 128, 'Windows per step.')
_HIDDEN = flags.DEFINE_integer('hidden', 64, 'Model width.')
_HEADS = flags.DEFINE_integer('heads', 4, 'Attention heads.')
_FFN = flags.DEFINE_integer('ffn', 128, 'Feed-forward width.')
_LAYERS = flags.DEFINE_integer('layers', 2, 'Encoder blocks.')
_MASK_PROB = flags.DEFINE_float('mask_prob', 0.2, 'Cloze masking rate.')
_REPEATS = flags.DEFINE_integer('repeats', 7, 'Timed passes.')
_OUTPUT = flags.DEFINE_string(
    'output', 'benchmarks/cloze_cpu.json', 'Where the JSON report goes.'
)


def _bert4rec(attention, dropout=0.2):
  """The BERT4Rec the flags describe, with `attention` and `dropout`."""
  return BERT4Rec(
      _NUM_ITEMS.value,
      EncoderConfig(
          causal=False,
          max_len=_MAX_LEN.value,
          hidden=_HIDDEN.value,
          layers=_LAYERS.value,
          heads=_HEADS.value,
          ffn=_FFN.value,
          attention=attention,
          dropout=dropout,
      ),
  )


def cloze_layouts(rng, *, batch, max_len, num_items, mask_prob):
  """One masked batch in both layouts: every position, masked ones only.

  Returns:
    {"all": batch with T = N, "masked": batch with T = max_predictions};
    both share `inputs` `[B, N]`.
  """
  windows = rng.integers(1, num_items + 1, (batch, max_len))
  limit = data.default_max_predictions(mask_prob, max_len)
  masked = data.cloze_mask(rng, np.ones_like(windows, bool), mask_prob, limit)
  masked_only = data.cloze_batch(windows, masked, num_items + 1, limit)
  every = dict(
      masked_only,
      positions=np.tile(np.arange(max_len, dtype=np.int32), (batch, 1)),
      targets=np.where(masked, windows, PAD_ID).astype(np.int32),
  )
  return {'all': every, 'masked': masked_only}


def _main(argv):
  del argv
  report = {
      'machine': bench_common.machine(),
      'config': {
          name: flags.FLAGS[name].value
          for name in (
              'num_items',
              'max_len',
              'batch_size',
              'hidden',
              'heads',
              'ffn',
              'layers',
              'mask_prob',
              'repeats',
          )
      },
      'records': [],
  }
  layouts = cloze_layouts(
      np.random.default_rng(0),
      batch=_BATCH.value,
      max_len=_MAX_LEN.value,
      num_items=_NUM_ITEMS.value,
      mask_prob=_MASK_PROB.value,
  )
  for attention in _ATTENTIONS.value:
    model = _bert4rec(attention)
    state, step = bench_common.train_setup(model, _NUM_ITEMS.value)
    _, exact_step = bench_common.train_setup(
        _bert4rec(attention, dropout=0.0), _NUM_ITEMS.value
    )
    rng = jax.random.key(1)
    compiled, losses, times = {}, {}, {name: [] for name in layouts}
    for name, batch in layouts.items():
      compiled[name] = step.lower(state, batch, rng).compile()
      compiled[name](state, batch, rng)  # Warm-up.
      _, metrics = exact_step(state, batch, rng)
      losses[name] = float(metrics['loss'])
    for _ in range(_REPEATS.value):
      for name, batch in layouts.items():
        start = time.perf_counter()
        jax.block_until_ready(compiled[name](state, batch, rng))
        times[name].append(time.perf_counter() - start)
    for name, batch in layouts.items():
      record = {
          'attention': attention,
          'layout': name,
          'scored_positions': batch['positions'].shape[1],
          'seconds': statistics.median(times[name]),
          'times_s': times[name],
          'loss': losses[name],
      }
      report['records'].append(record)
      print(
          f"{attention:8s} {name:6s} T={record['scored_positions']:4d} "
          f"{record['seconds']:.3f} s/step  loss without dropout "
          f"{record['loss']:.6f}",
          flush=True,
      )
    speedup = statistics.median(times['all']) / statistics.median(
        times['masked']
    )
    report['records'].append(
        {
            'attention': attention,
            'speedup': speedup,
            'loss_difference': abs(losses['all'] - losses['masked']),
        }
    )
    print(f'{attention:8s} masked-only is {speedup:.2f}x faster', flush=True)
  bench_common.write_json(_OUTPUT.value, report)
  print(f'wrote {_OUTPUT.value}')


def _check_flags():
  """Stops with one line naming the first bad flag."""
  flag_checks.check_sizes(
      'num_items',
      'max_len',
      'batch_size',
      'hidden',
      'heads',
      'ffn',
      'layers',
      'repeats',
  )
  flag_checks.check_fraction('mask_prob')
  flag_checks.check_output('output', _OUTPUT.value)
  flag_checks.check_model_fits(
      _bert4rec('linrec'),
      _MAX_LEN.value,
      '--num_items, --hidden, --ffn, --layers, --max_len',
  )


def main(argv):
  failures.quiet_info_logs()
  with failures.user_errors():
    _check_flags()
    _main(argv)


if __name__ == '__main__':
  app.run(main)
