r"""Training step of linrec_jax beside RecBole 1.1.1 (PyTorch), cell by cell.

Five implementations of SASRec at the official LinRec size (hidden 128, 8
heads, 2 layers, FFN 256, dropout 0.2, ML-1M's 3,416 items, float32):

- `recbole_linrec`: RecBole's SASRec with its attention core replaced by
  LinRec (`experiments.torch_linrec`: ELU features, per-token L2 norm,
  `Q_hat (K_hat^T V) / sqrt(d_h)`, no mask), as the authors run it.
- `recbole_softmax`: RecBole's own SASRec (causal softmax, padding masked).
- `jax_linrec`: `linrec_jax.models.SASRec`, attention 'linrec', non-causal,
  no padding mask (the official setup).
- `jax_softmax`: the same with causal softmax and the padding mask
  (RecBole's softmax SASRec).
- `jax_linrec_causal`: `jax_linrec` made causal, with the padding mask (the
  library's SASRec default): the table's "causal linrec / linrec" column
  is what causality costs the step.

A step is one training update on one batch of prefix samples (history ->
next item; the loss is the full cross-entropy over the catalogue at each
row's last real position): forward with dropout, backward, Adam (lr 1e-3).
RecBole: `zero_grad`, `calculate_loss`, `backward`, `Adam.step` with torch
on `--threads` threads; linrec_jax: the jitted, AOT-compiled
`linrec_jax.training.steps.make_train_step` with optax Adam, waited on with
`block_until_ready`. All five read the same batch (random item ids,
right-padded, prefix lengths drawn from ML-1M's prefix samples clipped at
N). Every cell and implementation runs in a fresh process
(`bench_common.run_isolated`); the two sides of each comparison run one
after the other (see `run_order`).

Figures: `seconds` is the median wall time of the timed steps after
`--warmup` untimed steps (compilation excluded for JAX, timed apart as
`compile_s`), `cpu_seconds` the median CPU time of the process (all its
threads) over the same steps, less sensitive to other processes' load;
`peak_rss_gib` is the child process's peak resident set size
(`ru_maxrss` from `wait4`), so it includes the Python runtime, torch or
JAX/XLA (with the compiler), the model, Adam's state, the batch and every
activation; `idle` records give the runtime alone. `xla_flops` is XLA's
cost analysis of the compiled JAX step (padding included), `gflops_per_s`
is that over `seconds`, and `share_of_matmul_peak` divides it by the best
of the jitted 2048^3 float32 matmul rates measured in JAX at the start and
the end of the same run (XLA counts a loop body once: a step with loops
is undercounted, as `jax_linrec_causal`'s chunked scan is). Memory limits:
a JAX cell whose temporaries and outputs in XLA's memory analysis exceed
`--memory_fraction` of the machine's available memory (`MemAvailable`,
after what other processes hold) is not run; a PyTorch cell is not run
when a smaller batch's measured peak at the same N, scaled linearly in the
batch (an overestimate), exceeds that fraction of the machine's total
memory; any cell that takes `MemAvailable` below `--min_free_gib` is
killed. All three are recorded as 'does_not_fit' with the reason.

  python -m experiments.benchmark_peers    # all cells: ~20 min idle, ~1 h loaded
  python -m experiments.benchmark_peers --cells=200x256 --impls=jax_linrec
"""

import datetime
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from experiments import peer_inputs
from experiments import peer_report
from linrec_jax.cli import bench_common

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = dict(
    num_items=3416, hidden=128, heads=8, layers=2, ffn=256, dropout=0.2
)
IMPLS = {  # name -> (side, attention, causal, mask_padding)
    'recbole_linrec': ('torch', 'linrec', False, False),
    'recbole_softmax': ('torch', 'softmax', True, True),
    'jax_linrec': ('jax', 'linrec', False, False),
    'jax_softmax': ('jax', 'softmax', True, True),
    'jax_linrec_causal': ('jax', 'linrec', True, True),
}
DEFAULT_CELLS = ['200x256', '1000x32', '2000x8', '200x2048']
SEED = 2000

_CELLS = flags.DEFINE_list('cells', DEFAULT_CELLS, 'Cells, NxBATCH each.')
_IMPLS = flags.DEFINE_list(
    'impls', list(IMPLS), f'Implementations, of {list(IMPLS)}.'
)
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Most timed steps per cell.')
_WARMUP = flags.DEFINE_integer('warmup', 1, 'Untimed steps before timing.')
_TIME_BUDGET = flags.DEFINE_float(
    'time_budget_s', 45, 'Timed steps stop at this total (at least 1 step).'
)
_TIMEOUT = flags.DEFINE_float('timeout_s', 600, 'Wall-clock limit per cell.')
_THREADS = flags.DEFINE_integer('threads', 2, 'torch.set_num_threads.')
_MATMUL = flags.DEFINE_integer(
    'matmul_size', 2048, 'The float32 matmul (size^3) that measures the peak.'
)
_MEMORY_FRACTION = flags.DEFINE_float(
    'memory_fraction',
    0.9,
    'Skip a JAX cell whose XLA memory analysis '
    'exceeds this x MemAvailable, a PyTorch cell predicted above this x '
    'MemTotal.',
)
_MIN_FREE = flags.DEFINE_float(
    'min_free_gib', 2.0, 'Kill a cell when MemAvailable falls below this.'
)
_PEERS_VENV = flags.DEFINE_string(
    'peers_venv',
    '.venv-peers',
    "The peers' virtual environment (made from "
    '--peers_requirements when missing).',
)
_PEERS_REQUIREMENTS = flags.DEFINE_string(
    'peers_requirements',
    'benchmarks/peers/requirements-recbole.txt',
    'Pinned torch, RecBole and their dependencies.',
)
_PEERS_PYTHON = flags.DEFINE_string(
    'peers_python', 'python3', "The interpreter the peers' venv is made with."
)
_DATA_ROOT = flags.DEFINE_string(
    'data_root',
    None,
    'Raw datasets (default $LINREC_DATA_DIR or '
    '../shared/data); ML-1M gives the prefix lengths.',
)
_PREPARED_ROOT = flags.DEFINE_string(
    'prepared_root', 'prepared', 'Cache of prepared datasets.'
)
_OUTPUT = flags.DEFINE_string(
    'output', 'benchmarks/peers_cpu.json', 'JSON path; the PNG goes beside it.'
)
_FRESH = flags.DEFINE_bool(
    'fresh',
    False,
    'Start a new report instead of updating an existing '
    '--output (whose cells are replaced one by one as they are measured '
    'again).',
)
_REPLOT = flags.DEFINE_bool(
    'replot', False, 'Only redraw the PNG and print the table of --output.'
)
_CELL = flags.DEFINE_string('cell', None, 'Internal: run one JAX cell (JSON).')
_CELL_OUTPUT = flags.DEFINE_string('cell_output', None, 'Internal.')


def parse_cell(text: str) -> tuple[int, int]:
  """'200x256' -> (200, 256); ValueError naming --cells otherwise."""
  match = re.fullmatch(r'\s*(\d+)\s*x\s*(\d+)\s*', text)
  if not match or min(int(match[1]), int(match[2])) < 1:
    raise ValueError(
        f'--cells: {text!r} is not NxBATCH with positive '
        'integers, e.g. 200x256'
    )
  return int(match[1]), int(match[2])


def run_order(cells, impls):
  """`(impl, n, batch)` in the order run: pair by pair, then cell by cell.

  The two sides of a comparison (`peer_report.PAIRS`) run back to back, so
  they see about the same load from other processes, causal LinRec right
  after the non-causal one it is compared with (`peer_report.CAUSAL`), and
  the LinRec group goes through all cells before the softmax pair.
  """
  groups = [list(pair[::-1]) for pair in peer_report.PAIRS.values()]
  causal, non_causal = peer_report.CAUSAL
  next(g for g in groups if non_causal in g).append(causal)
  groups.append([i for i in impls if not any(i in g for g in groups)])
  return [
      (impl, n, batch)
      for group in groups
      for n, batch in cells
      for impl in group
      if impl in impls
  ]


def predicted_peak_gib(measured, impl, n, batch):
  """A peak RSS for (impl, n, batch) from a smaller batch at the same N.

  Everything in a step but the runtime, parameters and Adam's state grows
  linearly in the batch, so the peak above the idle process is scaled by
  the batch ratio.

  Args:
    measured: records so far (see `peer_report`), with `idle_gib` set on
      'ok' records (the idle process of the same side).
    impl, n, batch: the cell to predict.

  Returns:
    The predicted GiB, or None without an 'ok' record of `impl` at `n`
    with a smaller batch.
  """
  smaller = [
      r
      for r in measured
      if (r['impl'], r['n'], r['status']) == (impl, n, 'ok')
      and r['batch'] < batch
  ]
  if not smaller:
    return None
  ref = max(smaller, key=lambda r: r['batch'])
  idle = ref.get('idle_gib', 0.0)
  return idle + (ref['peak_rss_gib'] - idle) * batch / ref['batch']


def _run_jax_cell(cell):
  """One linrec_jax cell in this process; returns its measurements."""
  # pylint: disable=g-import-not-at-top
  import resource
  import statistics
  import jax
  import jax.numpy as jnp
  from linrec_jax.layers.config import EncoderConfig
  from linrec_jax.models.sasrec import SASRec
  from linrec_jax.training import compiler_options
  # pylint: enable=g-import-not-at-top

  def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

  if cell['impl'] == 'idle':
    jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.zeros(())))
    return {'peak_rss_gib_self': peak_rss_gib(), 'jax': jax.__version__}
  if cell['impl'] == 'matmul_peak':
    return bench_common.measure_matmul_peak(cell['size'], cell['repeats'])
  if cell['impl'] == 'prefix_pools':
    return _write_prefix_pools(cell)
  _, attention, causal, mask_padding = IMPLS[cell['impl']]
  model = SASRec(
      MODEL['num_items'],
      EncoderConfig(
          max_len=cell['n'],
          hidden=MODEL['hidden'],
          layers=MODEL['layers'],
          heads=MODEL['heads'],
          ffn=MODEL['ffn'],
          dropout=MODEL['dropout'],
          attention=attention,
          causal=causal,
          mask_padding=mask_padding,
      ),
  )
  # As `linrec-train` compiles a prefix-sample step on this platform.
  state, step = bench_common.train_setup(
      model,
      MODEL['num_items'],
      donate=True,
      compiler_options=compiler_options.train_step_options(
          'prefix', jax.default_backend()
      ),
  )
  arrays = peer_inputs.load(cell['inputs'])
  batch = {
      'inputs': jnp.asarray(arrays['inputs']),
      'positions': jnp.asarray(arrays['lengths'] - 1)[:, None],
      'targets': jnp.asarray(arrays['targets'])[:, None],
  }
  args = [state, batch, jax.random.key(1)]
  start = time.perf_counter()
  compiled = step.lower(*args).compile()
  result = {
      'compile_s': time.perf_counter() - start,
      'jax': jax.__version__,
      'xla_flops': bench_common.xla_flops(compiled),
  }
  memory = compiled.memory_analysis()
  if memory is not None:
    need = memory.temp_size_in_bytes + memory.output_size_in_bytes
    result['xla_temp_gib'] = memory.temp_size_in_bytes / bench_common.GIB
    available = bench_common.meminfo_bytes('MemAvailable')
    if need > cell['memory_fraction'] * available:
      return dict(
          result,
          status=peer_report.DOES_NOT_FIT,
          reason=(
              f'XLA needs {need / bench_common.GIB:.1f} GiB of temporaries and '
              f'outputs > {cell["memory_fraction"]} x MemAvailable '
              f'{available / bench_common.GIB:.1f} GiB'
          ),
      )

  def run():
    start, cpu_start = time.perf_counter(), time.process_time()
    new_state, metrics = compiled(*args)
    jax.block_until_ready((new_state, metrics))
    args[0] = new_state  # The step donated the old state.
    return (
        time.perf_counter() - start,
        time.process_time() - cpu_start,
        float(metrics['loss']),
    )

  warmup = [run()[0] for _ in range(cell['warmup'])]
  first, first_cpu, loss = run()
  times, cpu_times = [first], [first_cpu]
  while (
      len(times) < cell['repeats']
      and sum(times) + times[-1] <= cell['time_budget_s']
  ):
    wall, cpu, _ = run()
    times.append(wall)
    cpu_times.append(cpu)
  return dict(
      result,
      seconds=statistics.median(times),
      times_s=times,
      cpu_seconds=statistics.median(cpu_times),
      warmup_s=warmup,
      loss=loss,
      peak_rss_gib_self=peak_rss_gib(),
  )


def _requirements_digest(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_peers_venv(
    venv: pathlib.Path, requirements: pathlib.Path, python: str
) -> dict:
  """Makes the peers' venv from `requirements` unless it is up to date.

  If pip cannot find a `+cpu` torch wheel (PyPI serves none), the plain
  version of the same release is installed instead and that is returned.

  Returns:
    `{'python': ..., 'torch_pin': the torch requirement installed}`.
  """
  stamp = venv / 'installed.json'
  digest = _requirements_digest(requirements)
  if stamp.is_file():
    installed = json.loads(stamp.read_text())
    if installed.get('requirements_sha256') == digest:
      return installed
  if not shutil.which(python) and not pathlib.Path(python).is_file():
    raise ValueError(f'--peers_python: {python!r} not found')
  print(
      f'Making {venv} from {requirements} (torch, RecBole; a few minutes)',
      flush=True,
  )
  subprocess.run([python, '-m', 'venv', '--clear', str(venv)], check=True)
  pip = [str(venv / 'bin' / 'python'), '-m', 'pip', 'install', '-q']
  pin = next(
      line.strip()
      for line in requirements.read_text().splitlines()
      if line.startswith('torch==')
  )
  done = subprocess.run(pip + ['-r', str(requirements)], check=False)
  if done.returncode and pin.endswith('+cpu'):
    plain = pin.removesuffix('+cpu')
    print(f'{pin} could not be installed; trying {plain}', flush=True)
    with tempfile.NamedTemporaryFile('w', suffix='.txt') as fallback:
      fallback.write(requirements.read_text().replace(pin, plain))
      fallback.flush()
      done = subprocess.run(pip + ['-r', fallback.name], check=False)
    pin = plain
  if done.returncode:
    raise RuntimeError(f'pip could not install {requirements} into {venv}')
  installed = {
      'requirements_sha256': digest,
      'torch_pin': pin,
      'python': str(venv / 'bin' / 'python'),
  }
  stamp.write_text(json.dumps(installed, indent=2) + '\n')
  return installed


def _write_prefix_pools(cell):
  """Saves ML-1M's prefix lengths clipped at each N of `cell['lengths']`.

  Runs in a child process: it imports JAX (through linrec_jax), and a
  parent's peak RSS is inherited by every child it starts afterwards.
  """
  # pylint: disable=g-import-not-at-top
  from data_prep import datasets
  from linrec_jax import data
  # pylint: enable=g-import-not-at-top
  directory = datasets.prepared_dir(
      'ml-1m', cell['data_root'], cell['prepared_root']
  )
  split = data.leave_one_out(data.load(directory))
  train_lengths = split.train_end - split.train_start
  peer_inputs.save(
      cell['path'],
      {
          str(n): peer_inputs.prefix_lengths(train_lengths, n)
          for n in cell['lengths']
      },
  )
  return {'dataset': str(directory), 'users': len(train_lengths)}


def _prefix_pools(spawn, lengths, path):
  """`{n: prefix lengths}` of ML-1M for each n, computed in a child."""
  record = spawn(
      'jax',
      dict(
          impl='prefix_pools',
          lengths=sorted(lengths),
          path=str(path),
          data_root=_DATA_ROOT.value,
          prepared_root=_PREPARED_ROOT.value,
      ),
  )
  if record['status'] != 'ok':
    last = record.get('stderr_tail', '').strip().splitlines() or ['']
    raise ValueError(f'--data_root: no ML-1M prefix lengths ({last[-1]})')
  return {int(n): pool for n, pool in peer_inputs.load(path).items()}


def _spawn(python, module, cell):
  return bench_common.run_isolated(
      [python, '-m', module, f'--cell={json.dumps(cell)}'],
      cwd=REPO_ROOT,
      timeout_s=_TIMEOUT.value,
      min_available_bytes=_MIN_FREE.value * bench_common.GIB,
  )


def _spawner(peers_python):
  """`spawn(side, cell)` for the JAX and torch children."""
  children = {
      'jax': (sys.executable, 'experiments.benchmark_peers'),
      'torch': (peers_python, 'experiments.recbole_cell'),
  }
  return lambda side, cell: _spawn(*children[side], cell)


def _timing():
  return dict(
      warmup=_WARMUP.value,
      repeats=_REPEATS.value,
      time_budget_s=_TIME_BUDGET.value,
      threads=_THREADS.value,
      memory_fraction=_MEMORY_FRACTION.value,
  )


def _measure(spawn, impl, n, batch, inputs, padding, measured, idle):
  """Runs (or predicts out) one cell; returns its record."""
  side = IMPLS[impl][0]
  record = dict(
      impl=impl,
      label=peer_report.LABELS[impl],
      n=n,
      batch=batch,
      side=side,
      attention=IMPLS[impl][1],
      causal=IMPLS[impl][2],
      mask_padding=IMPLS[impl][3],
      padding_share=padding,
      date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
  )
  total = bench_common.meminfo_bytes('MemTotal') / bench_common.GIB
  # JAX cells check XLA's own memory analysis before they run instead.
  predicted = (
      predicted_peak_gib(measured, impl, n, batch) if side == 'torch' else None
  )
  if predicted is not None:
    record['predicted_peak_gib'] = predicted
    if predicted > _MEMORY_FRACTION.value * total:
      return dict(
          record,
          status=peer_report.DOES_NOT_FIT,
          reason=(
              f'predicted peak {predicted:.1f} GiB (a smaller batch at N={n} '
              f'scaled) > {_MEMORY_FRACTION.value} x MemTotal {total:.1f} GiB'
          ),
      )
  record.update(
      spawn(side, dict(record, inputs=str(inputs), model=MODEL, **_timing()))
  )
  if record['status'] == 'out_of_memory':
    record['status'] = peer_report.DOES_NOT_FIT
  if record['status'] == 'ok':
    record['idle_gib'] = idle[side].get('peak_rss_gib', 0.0)
  return record


def _add_flops(record, peak_gflops):
  if record['status'] == 'ok' and record.get('xla_flops'):
    record['gflops_per_s'] = record['xla_flops'] / record['seconds'] / 1e9
    record['matmul_peak_gflops'] = peak_gflops
    record['share_of_matmul_peak'] = record['gflops_per_s'] / peak_gflops


def _print_table(report):
  print('\n' + peer_report.markdown_table(report['results']))
  print(
      '\nspeedup: RecBole time / linrec_jax time (> 1: linrec_jax faster); '
      'memory: linrec_jax peak RSS / RecBole peak RSS (< 1: less memory).'
  )
  print(
      "\nCPU time per step (median, the process's threads together):\n"
      + peer_report.cpu_table(report['results'])
  )
  for r in report['results']:
    if r['status'] != 'ok':
      print(
          f'N={r["n"]} B={r["batch"]} {r["impl"]}: {r["status"]}: '
          f'{r.get("reason", "")}'
      )


def _draw(report, output):
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    print(
        f'No plot: matplotlib is not installed; draw it elsewhere with '
        f'--replot --output={output}',
        flush=True,
    )
    return
  load = report['machine']['load_avg_at_start'][0]
  peer_report.plot(
      report['results'],
      output.with_suffix('.png'),
      title=f'SASRec training step, official size, {MODEL["num_items"]} '
      f'items, one batch of ML-1M-like prefix samples; CPU '
      f'{report["machine"]["cpus_usable"]} cores, load {load:.1f} at start',
  )


def _load_previous(output):
  """The earlier report at `output` (None with --fresh or none there)."""
  if _FRESH.value or not output.is_file():
    return None
  return json.loads(output.read_text())


def _setup(cells, impls):
  """The peers' venv (if a torch cell is asked for), spawner and pools."""
  venv = {'python': None, 'torch_pin': None}
  if any(IMPLS[i][0] == 'torch' for i in impls):
    venv = ensure_peers_venv(
        REPO_ROOT / _PEERS_VENV.value,
        REPO_ROOT / _PEERS_REQUIREMENTS.value,
        _PEERS_PYTHON.value,
    )
  spawn = _spawner(venv['python'])
  with tempfile.TemporaryDirectory() as tmp:
    pools = _prefix_pools(
        spawn, {n for n, _ in cells}, pathlib.Path(tmp) / 'pools.npz'
    )
  return venv, spawn, pools


def _new_report(output, cells, impls, spawn, venv):
  """The report's header (machine, idle runtimes, peaks) and kept cells."""
  machine = dict(
      bench_common.machine(), niceness=os.nice(0), source=_source_version()
  )
  sides = sorted({IMPLS[i][0] for i in impls})
  print(f'Idle processes and matmul peaks ({", ".join(sides)}) ...', flush=True)
  idle = {side: spawn(side, dict(impl='idle', **_timing())) for side in sides}
  report = {
      'what': __doc__.split('\n\n  python')[0],
      'model': MODEL,
      'seed': SEED,
      'timing': dict(_timing(), timeout_s=_TIMEOUT.value),
      'machine': machine,
      'idle': idle,
      'matmul_peak_jax': [
          spawn('jax', dict(impl='matmul_peak', size=_MATMUL.value, repeats=7))
      ],
      'results': [],
      'earlier_runs': [],
  }
  if 'torch' in sides:
    report['matmul_peak_torch'] = spawn(
        'torch',
        dict(
            impl='matmul_peak',
            size=_MATMUL.value,
            repeats=7,
            threads=_THREADS.value,
        ),
    )
    machine['versions'].update(
        torch=idle['torch'].get('torch'),
        recbole='1.1.1',
        torch_pin=venv['torch_pin'],
    )
  earlier = _load_previous(output)
  if earlier:  # Its cells stay until this run measures them again.
    report['results'] = earlier['results']
    report['earlier_runs'] = earlier.get('earlier_runs', []) + [
        {
            'machine': earlier['machine'],
            'matmul_peak_gflops': earlier.get('matmul_peak_gflops'),
        }
    ]
  return report


def _replace(results, record):
  """`results` with `record` in place of an earlier one of its cell."""
  key = (record['impl'], record['n'], record['batch'])
  kept = [r for r in results if (r['impl'], r['n'], r['batch']) != key]
  return kept + [record]


def _source_version():
  """The repository's commit and whether its work tree differs from it."""

  def git(*args):
    done = subprocess.run(
        ['git', *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None

  status = git('status', '--porcelain', '--untracked-files=no')
  return {
      'commit': git('rev-parse', 'HEAD'),
      'modified': None if status is None else bool(status),
  }


def _best_peak(report):
  return max(p.get('gflops', 0.0) for p in report['matmul_peak_jax'])


def main(argv):
  del argv
  if _CELL.value:
    result = _run_jax_cell(json.loads(_CELL.value))
    pathlib.Path(_CELL_OUTPUT.value).write_text(json.dumps(result))
    return
  output = REPO_ROOT / _OUTPUT.value
  if _REPLOT.value:
    report = json.loads(output.read_text())
    _print_table(report)
    _draw(report, output)
    return
  impls = _IMPLS.value
  unknown = sorted(set(impls) - set(IMPLS))
  if unknown:
    raise app.UsageError(
        f'--impls: unknown {unknown}; valid names: {list(IMPLS)}'
    )
  try:
    cells = [parse_cell(c) for c in _CELLS.value]
    venv, spawn, pools = _setup(cells, impls)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  report = _new_report(output, cells, impls, spawn, venv)
  machine, start = report['machine'], time.monotonic()
  with tempfile.TemporaryDirectory() as tmp:
    inputs, padding = {}, {}
    for n, batch in cells:
      rng = np.random.default_rng([SEED, n, batch])
      arrays = peer_inputs.draw_batch(
          rng, pools[n], batch=batch, max_len=n, num_items=MODEL['num_items']
      )
      inputs[n, batch] = pathlib.Path(tmp) / f'batch_{n}x{batch}.npz'
      peer_inputs.save(inputs[n, batch], arrays)
      padding[n, batch] = peer_inputs.padding_share(arrays['lengths'], n)
    for impl, n, batch in run_order(cells, impls):
      print(
          f'[{(time.monotonic() - start) / 60:.1f} min] N={n} B={batch} '
          f'{impl}: ',
          end='',
          flush=True,
      )
      record = _measure(
          spawn,
          impl,
          n,
          batch,
          inputs[n, batch],
          padding[n, batch],
          report['results'],
          report['idle'],
      )
      _add_flops(record, _best_peak(report))
      print(peer_report.describe(record), record.get('reason', ''), flush=True)
      report['results'] = _replace(report['results'], record)
      machine['load_avg_at_end'] = bench_common.load_avg()
      bench_common.write_json(output, report)
  report['matmul_peak_jax'].append(
      spawn('jax', dict(impl='matmul_peak', size=_MATMUL.value, repeats=7))
  )
  report['matmul_peak_gflops'] = best = _best_peak(report)
  for record in report['results']:
    if record['date'] >= machine['date']:  # Measured in this run.
      _add_flops(record, best)
  report['ratios'] = peer_report.ratios(report['results'])
  machine['load_avg_at_end'] = bench_common.load_avg()
  bench_common.write_json(output, report)
  _print_table(report)
  print(
      f'\nload average (1, 5, 15 min) at start {machine["load_avg_at_start"]}'
      f', at end {machine["load_avg_at_end"]}; JAX {_MATMUL.value}^3 matmul '
      f'peak {best:.0f} GFLOP/s; {(time.monotonic() - start) / 60:.1f} min'
  )
  _draw(report, output)
  print(f'Wrote {output} and {output.with_suffix(".png")}')


if __name__ == '__main__':
  app.run(main)
