r"""A training step compiled with and without `compiler_options`, side by side.

For each cell (a SASRec step: forward with dropout, backward, Adam, random
items padded to random lengths) this compiles two executables of the same
jitted step, one with XLA's default options and one with
`compiler_options.CPU_LIBRARY_DOTS_ONLY`, and times them alternately
(`--options_repeats` each, medians), so that load from other processes hits both
alike. `objective`: `prefix` scores each row's last real position (prefix
samples), `all` every real position (the `cpu` preset's windows). Prints a
table and writes JSON with the machine and its load.

  python -m experiments.benchmark_compiler_options \
      --options_output=benchmarks/compiler_options_cpu.json
"""

import statistics
import time

from absl import app
from absl import flags
import jax
import numpy as np

from linrec_jax.cli import bench_common
from linrec_jax.constants import PAD_ID
from linrec_jax.layers.config import EncoderConfig
from linrec_jax.models.sasrec import SASRec
from linrec_jax.training import compiler_options

NUM_ITEMS = 3416
# attention, causal, hidden, heads, N, batch, objective.
DEFAULT_CELLS = [
    'linrec,noncausal,128,8,200,256,prefix',
    'linrec,noncausal,128,8,1000,32,prefix',
    'linrec,noncausal,128,8,2000,8,prefix',
    'linrec,causal,64,2,200,64,prefix',
    'softmax,causal,128,8,200,256,prefix',
    'linrec,causal,64,2,200,32,all',
    'softmax,causal,64,2,200,32,all',
]

# Flag names of their own: a test process may import several benchmarks.
_CELLS = flags.DEFINE_multi_string(
    'options_cell',
    DEFAULT_CELLS,
    'attention,causal|noncausal,hidden,heads,N,batch,prefix|all (FFN 256, '
    '2 layers, dropout 0.2).',
)
_REPEATS = flags.DEFINE_integer(
    'options_repeats', 5, 'Timed steps per executable.'
)
_OUTPUT = flags.DEFINE_string(
    'options_output', 'benchmarks/compiler_options_cpu.json', 'JSON report.'
)


def parse_cell(text):
  """`'linrec,causal,64,2,200,32,all'` -> a dict of the cell's fields.

  Raises:
    ValueError: naming --options_cell and the text that is not a cell.
  """
  parts = text.split(',')
  if (
      len(parts) != 7
      or parts[1] not in ('causal', 'noncausal')
      or parts[6] not in ('prefix', 'all')
      or not all(p.isdigit() for p in parts[2:6])
  ):
    raise ValueError(
        f'--options_cell: {text!r} is not attention,causal|noncausal,hidden,heads,'
        'N,batch,prefix|all'
    )
  hidden, heads, length, batch = map(int, parts[2:6])
  return dict(
      attention=parts[0],
      causal=parts[1] == 'causal',
      hidden=hidden,
      heads=heads,
      length=length,
      batch=batch,
      objective=parts[6],
  )


def make_batch(cell, seed=0):
  """Random items, right-padded to lengths in `[1, N]` (half of them N).

  Returns:
    `inputs` `[B, N]`; `positions` and `targets` `[B, 1]` for `prefix`
    (the last real position), `[B, N]` for `all` (`PAD_ID` past the end).
  """
  rng = np.random.default_rng(seed)
  batch, length = cell['batch'], cell['length']
  lengths = np.minimum(rng.integers(1, 2 * length, batch), length)
  real = np.arange(length) < lengths[:, None]
  inputs = np.where(real, rng.integers(1, NUM_ITEMS + 1, real.shape), PAD_ID)
  if cell['objective'] == 'prefix':
    positions = (lengths - 1)[:, None]
    targets = rng.integers(1, NUM_ITEMS + 1, (batch, 1))
  else:
    positions = np.tile(np.arange(length), (batch, 1))
    targets = np.where(real, rng.integers(1, NUM_ITEMS + 1, real.shape), PAD_ID)
  return {
      'inputs': inputs.astype(np.int32),
      'positions': positions.astype(np.int32),
      'targets': targets.astype(np.int32),
  }


def measure(cell, repeats):
  """Median step seconds and first-step loss of both executables."""
  config = EncoderConfig(
      max_len=cell['length'],
      hidden=cell['hidden'],
      heads=cell['heads'],
      ffn=256,
      layers=2,
      dropout=0.2,
      attention=cell['attention'],
      causal=cell['causal'],
      mask_padding=cell['causal'],
  )
  state, step = bench_common.train_setup(SASRec(NUM_ITEMS, config), NUM_ITEMS)
  batch, rng = make_batch(cell), jax.random.key(1)
  variants = {
      'default': None,
      'library_dots_only': compiler_options.CPU_LIBRARY_DOTS_ONLY,
  }
  compiled, result = {}, {}
  for name, options in variants.items():
    compiled[name] = step.lower(state, batch, rng).compile(
        compiler_options=options
    )
    _, metrics = compiled[name](state, batch, rng)
    result[name] = {'loss': float(metrics['loss']), 'times_s': []}
  for _ in range(repeats):
    for name, executable in compiled.items():
      start = time.perf_counter()
      jax.block_until_ready(executable(state, batch, rng))
      result[name]['times_s'].append(time.perf_counter() - start)
  for entry in result.values():
    entry['seconds'] = statistics.median(entry['times_s'])
  result['speedup'] = (
      result['default']['seconds'] / result['library_dots_only']['seconds']
  )
  return result


def main(argv):
  del argv
  cells = [parse_cell(text) for text in _CELLS.value]
  report = {'machine': bench_common.machine(), 'repeats': _REPEATS.value}
  report['cells'] = []
  print('| cell | default | library dots only | speedup |')
  print('|---|---|---|---|')
  for text, cell in zip(_CELLS.value, cells):
    result = measure(cell, _REPEATS.value)
    report['cells'].append(dict(cell, spec=text, **result))
    print(
        f"| {text} | {result['default']['seconds']:.3f} s | "
        f"{result['library_dots_only']['seconds']:.3f} s | "
        f"{result['speedup']:.2f}x |",
        flush=True,
    )
  report['load_avg_at_end'] = bench_common.load_avg()
  bench_common.write_json(_OUTPUT.value, report)
  print(f'wrote {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
