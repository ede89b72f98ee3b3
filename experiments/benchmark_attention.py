r"""Peak memory and time of one forward+backward of softmax and LinRec.

Each cell (variant, causal, N, B) runs in a fresh subprocess, which jits
`value_and_grad` of `sum(attention(q, k, v))` with respect to q, k and v,
compiles it, then reports the median wall time of several runs and the
process peak RSS (`ru_maxrss`, which includes the JAX runtime). An idle JAX
process (one tiny jitted op) is measured the same way so a reader can
subtract its RSS. Cells
whose predicted memory exceeds the available memory are skipped.

  python -m experiments.benchmark_attention --lengths=1000,4000,8192
"""

import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags
import jax

from linrec_jax.cli import failures
from linrec_jax.cli import flag_checks
from linrec_jax.layers import attention

CELLS = (
    ('softmax', False),
    ('softmax', True),
    ('linrec', False),
    ('linrec', True),
)
FLOAT32_BYTES = 4
# Rough peak of the forward+backward: softmax keeps about this many
# [B, H, N, N] tensors alive (scores, weights, their gradients and XLA
# temporaries; about 6 were measured at N = 1000 on CPU) ...
SCORE_TENSOR_COPIES = 6
# ... and every variant about this many [B, N, H, K] tensors (inputs,
# normalised features, outputs and gradients).
INPUT_TENSOR_COPIES = 16
DESCRIPTION = (
    'one jitted forward+backward (value_and_grad of sum(out) wrt q, k, v), '
    'float32, no mask, causal LinRec chunk size {chunk}; peak_rss_mib is the '
    'process peak RSS (ru_maxrss) including the JAX runtime, one process per '
    'cell; idle_peak_rss_mib is an idle JAX process (one tiny jitted op) '
    'measured the same way; the CPU is shared with other processes (see '
    'load_avg_1m)'
)
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

_LENGTHS = flags.DEFINE_list('lengths', ['1000', '4000', '8192'], 'N.')
_BATCH = flags.DEFINE_integer('batch', 64, 'Batch size B.')
_HEADS = flags.DEFINE_integer('heads', 8, 'Heads H.')
_HEAD_DIM = flags.DEFINE_integer('head_dim', 16, 'Head dim d_h.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed runs after compile.')
_MEMORY_FRACTION = flags.DEFINE_float(
    'memory_fraction', 0.8, 'Skip cells predicted above this * MemAvailable.'
)
_OUTPUT = flags.DEFINE_string(
    'output', 'benchmarks/attention_cpu.json', 'Where the JSON goes.'
)
_CELL = flags.DEFINE_string(
    'cell', None, 'Internal: "variant,causal,N,B" or "idle"; run one cell.'
)


def _peak_rss_mib():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB.


def _run_cell(cell):
  """Runs one cell in this process; returns its result dict."""
  if cell == 'idle':  # Loads the runtime and compiler, computes nothing big.
    jax.jit(lambda x: x + 1)(jax.numpy.zeros(())).block_until_ready()
    return {'cell': 'idle', 'peak_rss_mib': _peak_rss_mib()}
  variant, causal, length, batch = cell.split(',')
  causal, length, batch = causal == 'True', int(length), int(batch)
  shape = (batch, length, _HEADS.value, _HEAD_DIM.value)
  qkv = [
      jax.random.normal(key, shape)
      for key in jax.random.split(jax.random.key(0), 3)
  ]

  def loss(q, k, v):
    return attention.VARIANTS[variant](q, k, v, causal=causal).sum()

  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
  start = time.perf_counter()
  jax.block_until_ready(step(*qkv))
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(step(*qkv))
    times.append(time.perf_counter() - start)
  return {
      'median_s': statistics.median(times),
      'times_s': times,
      'first_call_s': compile_s,
      'peak_rss_mib': _peak_rss_mib(),
  }


def _meminfo_bytes(field):
  for line in pathlib.Path('/proc/meminfo').read_text().splitlines():
    if line.startswith(field + ':'):
      return int(line.split()[1]) * 1024
  raise KeyError(field)


def _skip_reason(variant, length, batch, available):
  """Why a cell would not fit in memory, or None if it is predicted to."""
  heads, head_dim = _HEADS.value, _HEAD_DIM.value
  scores = batch * heads * length**2 * FLOAT32_BYTES
  inputs = batch * length * heads * head_dim * FLOAT32_BYTES
  need = INPUT_TENSOR_COPIES * inputs
  if variant == 'softmax':
    need += SCORE_TENSOR_COPIES * scores
  if need <= _MEMORY_FRACTION.value * available:
    return None
  return (
      f'predicted {need / 1e9:.1f} GB (one [B,H,N,N] score tensor is '
      f'{scores / 1e9:.1f} GB) > {_MEMORY_FRACTION.value} x MemAvailable '
      f'{available / 1e9:.1f} GB'
  )


def _spawn(cell):
  """Runs one cell in a fresh Python process; returns its result dict."""
  args = [
      sys.executable,
      '-m',
      'experiments.benchmark_attention',
      f'--cell={cell}',
      f'--heads={_HEADS.value}',
      f'--head_dim={_HEAD_DIM.value}',
      f'--repeats={_REPEATS.value}',
  ]
  load = os.getloadavg()[0]
  proc = subprocess.run(
      args, cwd=REPO_ROOT, capture_output=True, text=True, check=False
  )
  if proc.returncode != 0:
    return {
        'status': f'failed (exit {proc.returncode})',
        'stderr_tail': proc.stderr[-2000:],
        'load_avg_1m': load,
    }
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  return dict(result, status='ok', load_avg_1m=load)


def _machine():
  return {
      'platform': platform.platform(),
      'processor': platform.processor(),
      'cpu_count': os.cpu_count(),
      'python': platform.python_version(),
      'jax': jax.__version__,
      'jaxlib': importlib.metadata.version('jaxlib'),
      'mem_total_gb': _meminfo_bytes('MemTotal') / 1e9,
      'mem_available_gb': _meminfo_bytes('MemAvailable') / 1e9,
      'load_avg_1m_at_start': os.getloadavg()[0],
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(),
  }


def _print_table(idle, results):
  idle_mib = idle.get('peak_rss_mib', float('nan'))
  print(
      f'Peak RSS is per process, JAX runtime included; an idle JAX process '
      f'peaks at {idle_mib:.0f} MiB (subtract it for the step alone).'
  )
  print(
      f'{"variant":8} {"causal":6} {"N":>5} {"B":>3} {"median s":>9} '
      f'{"1st call s":>10} {"peak RSS MiB":>12}  status'
  )
  for r in results:
    nums = (
        f'{r["median_s"]:9.4f} {r["first_call_s"]:10.2f} '
        f'{r["peak_rss_mib"]:12.0f}'
        if r['status'] == 'ok'
        else f'{"-":>9} {"-":>10} {"-":>12}'
    )
    print(
        f'{r["variant"]:8} {str(r["causal"]):6} {r["length"]:5d} '
        f'{r["batch"]:3d} {nums}  {r.get("reason", r["status"])}'
    )


def _main(argv):
  del argv
  if _CELL.value:
    print(json.dumps(_run_cell(_CELL.value)))
    return
  machine, batch = _machine(), _BATCH.value
  idle = _spawn('idle')
  results = []
  for length in map(int, _LENGTHS.value):
    for variant, causal in CELLS:
      row = {
          'variant': variant,
          'causal': causal,
          'length': length,
          'batch': batch,
      }
      reason = _skip_reason(
          variant, length, batch, _meminfo_bytes('MemAvailable')
      )
      row.update(
          {'status': 'skipped', 'reason': reason}
          if reason
          else _spawn(f'{variant},{causal},{length},{batch}')
      )
      results.append(row)
      print(
          f'{variant} causal={causal} N={length}: {row["status"]}', flush=True
      )
  _print_table(idle, results)
  report = {
      'what': DESCRIPTION.format(chunk=attention.DEFAULT_CHUNK_SIZE),
      'heads': _HEADS.value,
      'head_dim': _HEAD_DIM.value,
      'repeats': _REPEATS.value,
      'machine': machine,
      'idle_peak_rss_mib': idle.get('peak_rss_mib'),
      'results': results,
  }
  output = REPO_ROOT / _OUTPUT.value
  output.parent.mkdir(parents=True, exist_ok=True)
  output.write_text(json.dumps(report, indent=2) + '\n')
  print(f'Wrote {output}')


def _check_flags():
  """Stops with one line naming the first bad flag."""
  flag_checks.check_size_lists('lengths')
  flag_checks.check_sizes('batch', 'heads', 'head_dim', 'repeats')
  flag_checks.check_fraction('memory_fraction')
  flag_checks.check_output('output', REPO_ROOT / _OUTPUT.value)


def main(argv):
  failures.quiet_info_logs()
  with failures.user_errors():
    _check_flags()
    _main(argv)


if __name__ == '__main__':
  app.run(main)
