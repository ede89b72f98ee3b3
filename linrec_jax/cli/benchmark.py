r"""Time and peak memory of SASRec with each attention variant against N.

Every cell (variant, N, batch, mode) runs in a fresh process (see
`bench_common.run_isolated`) at the official model size (hidden 128, 8
heads, 2 layers, FFN 256, dropout 0.2, ML-1M's 3,416 items), float32, on
random full-length histories (no padding):

- `train`: one jitted step (forward with dropout, backward, Adam update)
  with the full cross-entropy over all items at the last position only (the
  official prefix training), so scoring the catalogue does not hide the
  attention; `--loss_positions=all` scores every position instead.
- `infer`: scores of the last position, `[B, num_items + 1]`.

`seconds` is the median of timed runs after compilation and one warm-up
run (fewer runs when a run is slow, see --time_budget_s); `peak_rss_gib` is
the process's peak RSS, so it includes the Python and JAX runtime, the
compiler and the inputs; an idle process measured the same way is in the
report. On an accelerator, `peak_device_gib` is the device allocator's peak
(`memory_stats()["peak_bytes_in_use"]`), the figure compared there. Cells
predicted not to fit in the available memory are skipped.

`xla_flops` is XLA's cost analysis of the compiled cell (padding included;
a loop body counted once, so for cells with loops, such as causal LinRec's
chunked scan or --microbatches > 1, it is a lower bound), `gflops_per_s` is
that over `seconds`, and `share_of_matmul_peak` divides it by this
machine's float32 matmul rate, the best of a jitted 2048^3 matmul (median
of 7 runs) measured in a fresh process at the start and at the end of the
same run (`matmul_peak` in the report).

  linrec-benchmark            # full grid, ~40 min on 2 cores
  linrec-benchmark --quick    # a small grid, a few minutes

(`python -m experiments.benchmark` runs the same program.) Paths are
relative to the current directory.
"""

import importlib.util
import json
import pathlib
import statistics
import sys
import time

from absl import app
from absl import flags

from linrec_jax import cli
from linrec_jax.cli import bench_common
from linrec_jax.cli import failures
from linrec_jax.cli import flag_checks

VARIANTS = {  # name -> (attention, causal)
    'softmax': ('softmax', False),
    'linrec': ('linrec', False),
    'linrec_causal': ('linrec', True),
    'linear': ('linear', False),
    'efficient': ('efficient', False),
    'linrec_decay_causal': ('linrec_decay', True),
    'linrec_learned_decay_causal': ('linrec_learned_decay', True),
}
DEFAULT_VARIANTS = ['softmax', 'linrec', 'linrec_causal', 'linear', 'efficient']
NUM_ITEMS, HIDDEN, HEADS, LAYERS, FFN = 3416, 128, 8, 2, 256
F32 = 4
# Peak memory model, calibrated on XLA's buffer assignment at N = 500 and
# 2000: a step keeps about this many [B, N, D] float32 tensors ...
ACTIVATION_COPIES = {'train': 80, 'infer': 11}
# ... plus, for softmax, about this many [B, H, N, N] score tensors.
SCORE_COPIES = {'train': 6.5, 'infer': 2}
# Python, JAX, the compiler and parameters; an idle process is ~0.4 GiB.
BASE_BYTES = 0.8 * bench_common.GIB
QUICK = dict(lengths=['100', '1000'], batches=['16'], repeats=3)

_VARIANTS = flags.DEFINE_list(
    'variants', DEFAULT_VARIANTS, f'Variants, of {sorted(VARIANTS)}.'
)
_LENGTHS = flags.DEFINE_list(
    'lengths', '50,100,200,500,1000,2000,4000,8000'.split(','), 'N.'
)
_BATCHES = flags.DEFINE_list('batches', ['64', '16'], 'Batch sizes.')
_MODES = flags.DEFINE_list('modes', ['train', 'infer'], 'train and/or infer.')
_LOSS_POSITIONS = flags.DEFINE_enum(
    'loss_positions',
    'last',
    ['last', 'all'],
    'Train loss at the last position (official prefix training) or at all.',
)
_MICROBATCHES = flags.DEFINE_integer(
    'microbatches',
    1,
    'Train cells accumulate gradients over this many '
    'chunks of the batch (the same update, less memory).',
)
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Most timed runs per cell.')
_TIME_BUDGET = flags.DEFINE_float(
    'time_budget_s', 20, 'Timed runs stop at this total (at least 1 run).'
)
_TIMEOUT = flags.DEFINE_float('timeout_s', 420, 'Per-cell wall-clock limit.')
_MEMORY_FRACTION = flags.DEFINE_float(
    'memory_fraction', 0.9, 'Skip cells predicted above this x MemAvailable.'
)
_MIN_FREE = flags.DEFINE_float(
    'min_free_gib', 1.0, 'Kill a cell when MemAvailable falls below this.'
)
_QUICK = flags.DEFINE_bool('quick', False, f'Small grid: {QUICK}.')
_OUTPUT = flags.DEFINE_string(
    'output', 'benchmarks/model_cpu.json', 'JSON path; PNGs go beside it.'
)
_REPLOT = flags.DEFINE_bool(
    'replot', False, 'Only redraw the PNGs of --output from its JSON.'
)
_MATMUL = flags.DEFINE_integer(
    'matmul_size', 2048, 'The float32 matmul (size^3) that measures the peak.'
)
_CELL = flags.DEFINE_string('cell', None, 'Internal: run one cell (JSON).')
_CELL_OUTPUT = flags.DEFINE_string('cell_output', None, 'Internal.')


def _run_cell(cell):
  """Runs one cell in this process; returns its measurements."""
  # Imported here so that the parent, which only schedules, stays small.
  # pylint: disable=g-import-not-at-top
  import resource
  import jax
  import jax.numpy as jnp
  from linrec_jax.layers.config import EncoderConfig
  from linrec_jax.models.sasrec import SASRec
  # pylint: enable=g-import-not-at-top

  def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

  if cell['variant'] == 'idle':  # The runtime and compiler, nothing big.
    jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.zeros(())))
    return {'peak_rss_gib_self': peak_rss_gib()}
  if cell['variant'] == 'matmul_peak':
    return bench_common.measure_matmul_peak(cell['size'])
  attention, causal = VARIANTS[cell['variant']]
  n, batch = cell['n'], cell['batch']
  model = SASRec(
      NUM_ITEMS,
      EncoderConfig(
          max_len=n,
          hidden=HIDDEN,
          layers=LAYERS,
          heads=HEADS,
          ffn=FFN,
          attention=attention,
          causal=causal,
      ),
  )
  keys = jax.random.split(jax.random.key(0), 3)
  state, train_step = bench_common.train_setup(
      model,
      NUM_ITEMS,
      microbatches=cell.get('microbatches', 1),
      donate=True,
  )
  inputs = jax.random.randint(keys[1], (batch, n), 1, NUM_ITEMS + 1)
  if cell['mode'] == 'infer':
    fn = jax.jit(
        lambda params, inputs: model.apply(
            {'params': params},
            inputs,
            method=lambda m, x: m.logits(m(x)[:, -1]),
        )
    )
    args = (state.params, inputs)
  else:
    fn = train_step
    t = n if cell['loss_positions'] == 'all' else 1
    positions = jnp.broadcast_to(jnp.arange(n - t, n), (batch, t))
    targets = jax.random.randint(keys[2], (batch, t), 1, NUM_ITEMS + 1)
    args = [
        state,
        {'inputs': inputs, 'positions': positions, 'targets': targets},
        keys[2],
    ]
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  result = {
      'compile_s': time.perf_counter() - start,
      'xla_flops': bench_common.xla_flops(compiled),
  }
  memory = compiled.memory_analysis()
  if memory is not None:
    result.update(
        xla_temp_gib=memory.temp_size_in_bytes / bench_common.GIB,
        xla_args_gib=memory.argument_size_in_bytes / bench_common.GIB,
        xla_output_gib=memory.output_size_in_bytes / bench_common.GIB,
    )
    need = (memory.temp_size_in_bytes + memory.output_size_in_bytes) * 1.05
    available, where = _free_bytes(jax.devices()[0])
    if need > _MEMORY_FRACTION.value * available:
      return dict(
          result,
          status='skipped',
          reason=(
              f'XLA needs {need / bench_common.GIB:.1f} GiB of temporaries and '
              f'outputs > {_MEMORY_FRACTION.value} x {where} '
              f'{available / bench_common.GIB:.1f} GiB'
          ),
      )
  result['rss_after_compile_gib'] = peak_rss_gib()

  def run():
    start = time.perf_counter()
    out = compiled(*args)
    jax.block_until_ready(out)
    if cell['mode'] == 'train':
      args[0] = out[0]  # The step donated the old state.
    return time.perf_counter() - start

  result['warmup_s'] = run()
  times = [run()]
  while (
      len(times) < cell['repeats']
      and sum(times) + times[-1] <= cell['time_budget_s']
  ):
    times.append(run())
  result.update(
      seconds=statistics.median(times),
      times_s=times,
      peak_rss_gib_self=peak_rss_gib(),
  )
  stats = jax.devices()[0].memory_stats()
  if jax.devices()[0].platform != 'cpu' and stats:
    result['peak_device_gib'] = stats['peak_bytes_in_use'] / bench_common.GIB
  return result


def _free_bytes(device):
  """Memory a cell may use on `device`, and what that figure is."""
  stats = device.memory_stats() if device.platform != 'cpu' else None
  if stats:
    return stats['bytes_limit'] - stats['bytes_in_use'], 'device memory free'
  return bench_common.meminfo_bytes('MemAvailable'), 'MemAvailable'


def _memory_key(results):
  """The peak-memory field to compare: the device's when there is one."""
  ok = [r for r in results if r['status'] == 'ok']
  if ok and all('peak_device_gib' in r for r in ok):
    return 'peak_device_gib'
  return 'peak_rss_gib'


def _predicted_bytes(variant, n, batch, mode, loss_positions, microbatches):
  """A rough peak for the cell (see ACTIVATION_COPIES, SCORE_COPIES)."""
  if mode == 'train':
    batch //= microbatches  # One chunk's activations are alive at a time.
  need = BASE_BYTES + ACTIVATION_COPIES[mode] * batch * n * HIDDEN * F32
  if variant == 'softmax':
    need += SCORE_COPIES[mode] * batch * HEADS * n * n * F32
  if mode == 'train' and loss_positions == 'all':
    need += 3 * batch * n * (NUM_ITEMS + 1) * F32  # Logits and gradients.
  return need


def _spawn(cell):
  args = [
      sys.executable,
      '-m',
      'linrec_jax.cli.benchmark',
      f'--cell={json.dumps(cell)}',
      f'--memory_fraction={_MEMORY_FRACTION.value}',
  ]
  return bench_common.run_isolated(
      args,
      cwd=None,
      timeout_s=_TIMEOUT.value,
      min_available_bytes=_MIN_FREE.value * bench_common.GIB,
  )


def _grid():
  quick = _QUICK.value
  lengths = QUICK['lengths'] if quick else _LENGTHS.value
  batches = QUICK['batches'] if quick else _BATCHES.value
  unknown = sorted(set(_VARIANTS.value) - set(VARIANTS))
  if unknown:
    raise ValueError(
        f'--variants: unknown {unknown}; valid names: {sorted(VARIANTS)}'
    )
  return [
      dict(variant=v, n=int(n), batch=int(b), mode=m)
      for b in batches
      for n in lengths
      for v in _VARIANTS.value
      for m in _MODES.value
  ]


def _measure(cell, failed):
  """Runs one cell, or says why it is skipped; returns its record."""
  key = (cell['variant'], cell['batch'], cell['mode'])
  available = bench_common.meminfo_bytes('MemAvailable')
  microbatches = _MICROBATCHES.value if cell['mode'] == 'train' else 1
  predicted = _predicted_bytes(
      **cell, loss_positions=_LOSS_POSITIONS.value, microbatches=microbatches
  )
  record = dict(
      cell,
      attention=VARIANTS[cell['variant']][0],
      causal=VARIANTS[cell['variant']][1],
      predicted_gib=predicted / bench_common.GIB,
      mem_available_gib=available / bench_common.GIB,
  )
  if cell['mode'] == 'train':
    record.update(
        loss_positions=_LOSS_POSITIONS.value, microbatches=microbatches
    )
  if key in failed:
    return dict(record, status='skipped', reason=failed[key])
  if predicted > _MEMORY_FRACTION.value * available:
    return dict(
        record,
        status='skipped',
        reason=(
            f'predicted {predicted / bench_common.GIB:.1f} GiB > '
            f'{_MEMORY_FRACTION.value} x MemAvailable '
            f'{available / bench_common.GIB:.1f} GiB'
        ),
    )
  quick = _QUICK.value
  record.update(
      _spawn(
          dict(
              record,
              repeats=QUICK['repeats'] if quick else _REPEATS.value,
              time_budget_s=_TIME_BUDGET.value,
          )
      )
  )
  if record['status'] != 'ok':
    failed[key] = (
        f'{record["status"]} at N={cell["n"]}: {record.get("reason", "")}'
    )
  return record


def _add_flops(record, peak_gflops):
  """Adds `gflops_per_s` and `share_of_matmul_peak` to an 'ok' record."""
  if record['status'] == 'ok' and record.get('xla_flops') and peak_gflops:
    record['gflops_per_s'] = record['xla_flops'] / record['seconds'] / 1e9
    record['share_of_matmul_peak'] = record['gflops_per_s'] / peak_gflops


def _best_peak(peaks):
  return max((p.get('gflops', 0.0) for p in peaks), default=0.0)


def _describe(r):
  if r['status'] == 'ok':
    device = (
        f'  device {r["peak_device_gib"]:6.2f} GiB'
        if 'peak_device_gib' in r
        else ''
    )
    flops = (
        f'  {r["gflops_per_s"]:6.1f} GFLOP/s '
        f'({100 * r["share_of_matmul_peak"]:4.1f} % of peak)'
        if 'share_of_matmul_peak' in r
        else ''
    )
    return (
        f'{r["seconds"]:9.4f} s  {r["peak_rss_gib"]:6.2f} GiB{device}'
        f'{flops}'
        f'  load {r["load_avg_start"][0]:.1f}->'
        f'{r["load_avg_end"][0]:.1f}'
    )
  return f'{r["status"]}: {r.get("reason", "")}'


def _ratios(results):
  """linrec / softmax time and memory per (N, batch, mode), both measured."""
  ok = {
      (r['variant'], r['n'], r['batch'], r['mode']): r
      for r in results
      if r['status'] == 'ok'
  }
  memory, out = _memory_key(results), []
  for (variant, n, batch, mode), lin in sorted(ok.items()):
    soft = ok.get(('softmax', n, batch, mode))
    if variant == 'linrec' and soft:
      out.append(
          dict(
              n=n,
              batch=batch,
              mode=mode,
              speedup=soft['seconds'] / lin['seconds'],
              memory_ratio=soft[memory] / lin[memory],
              memory=memory,
          )
      )
  return out


def _plot(results, idle, output):
  if importlib.util.find_spec('matplotlib') is None:
    print(
        f'No plots: matplotlib is not installed; draw them elsewhere with '
        f'--replot --output={output}',
        flush=True,
    )
    return
  ok = [r for r in results if r['status'] == 'ok']
  # The modes, batches and variants the report holds (so --replot draws a
  # report made with other flags as it was measured).
  batches = sorted({r['batch'] for r in ok}, reverse=True)
  modes = [m for m in ('train', 'infer') if any(r['mode'] == m for r in ok)]
  series = [v for v in VARIANTS if any(r['variant'] == v for r in ok)]
  panels = [
      (f'{m}, batch {b}', lambda r, m=m, b=b: (r['mode'], r['batch']) == (m, b))
      for m in modes
      for b in batches
      if any((r['mode'], r['batch']) == (m, b) for r in ok)
  ]
  common = dict(series=series, panels=panels)
  train = [r for r in ok if r['mode'] == 'train']
  positions = (
      '/'.join(sorted({r.get('loss_positions', 'last') for r in train}))
      or _LOSS_POSITIONS.value
  )
  chunks = sorted({r.get('microbatches', 1) for r in train})
  accumulated = (
      f', {"/".join(map(str, chunks))} accumulated micro-batches'
      if chunks and chunks != [1]
      else ''
  )
  bench_common.plot_grid(
      ok,
      value='seconds',
      ylabel='seconds per step (median of runs)',
      path=output.with_name(output.stem + '_time.png'),
      title='SASRec time (train: fwd+bwd+Adam, loss at the '
      f'{positions} position(s){accumulated}; infer: last-position scores);'
      ' missing points did not fit in memory',
      **common,
  )
  if _memory_key(results) == 'peak_device_gib':
    memory = dict(
        value='peak_device_gib',
        ylabel='device peak (GiB)',
        title='Peak device memory of one cell (allocator peak); '
        'missing points did not fit in memory',
    )
  else:
    memory = dict(
        value='peak_rss_gib',
        ylabel='process peak RSS (GiB)',
        title='Peak RSS of a process running one cell (runtime '
        'included); missing points did not fit in memory',
        hline=(idle.get('peak_rss_gib'), 'idle process'),
    )
  bench_common.plot_grid(
      ok, path=output.with_name(output.stem + '_memory.png'), **memory, **common
  )


def _main(argv):
  del argv
  if _CELL.value:
    result = _run_cell(json.loads(_CELL.value))
    pathlib.Path(_CELL_OUTPUT.value).write_text(json.dumps(result))
    return
  output = pathlib.Path(_OUTPUT.value)
  if _QUICK.value and _OUTPUT.value == _OUTPUT.default:
    output = output.with_name(output.stem + '_quick.json')
  if _REPLOT.value:
    report = json.loads(output.read_text())
    _plot(report['results'], report['idle'], output)
    return
  report = {
      'what': __doc__.split('\n\n  linrec-benchmark')[0],
      'model': dict(
          num_items=NUM_ITEMS,
          hidden=HIDDEN,
          heads=HEADS,
          layers=LAYERS,
          ffn=FFN,
          dropout=0.2,
          dtype='float32',
          mask_padding=True,
          optimizer='adam lr 1e-3',
      ),
      'train_loss': (
          f'full cross-entropy over all {NUM_ITEMS} items at '
          f'{_LOSS_POSITIONS.value} position(s)'
      ),
      'timing': dict(
          repeats=_REPEATS.value,
          time_budget_s=_TIME_BUDGET.value,
          timeout_s=_TIMEOUT.value,
          warmup_runs=1,
      ),
      'machine': bench_common.machine(),
      'results': [],
  }
  print('Idle process (JAX, Flax, one tiny jitted op) ...', flush=True)
  report['idle'] = idle = _spawn({'variant': 'idle'})
  report['matmul_peak'] = peaks = [
      _spawn({'variant': 'matmul_peak', 'size': _MATMUL.value})
  ]
  print(
      f'float32 {_MATMUL.value}^3 matmul: {_best_peak(peaks):.0f} GFLOP/s',
      flush=True,
  )
  grid, failed, start = _grid(), {}, time.monotonic()
  print(
      f'Idle peak RSS {idle.get("peak_rss_gib", float("nan")):.2f} GiB; '
      f'{len(grid)} cells -> {output}',
      flush=True,
  )
  for i, cell in enumerate(grid):
    minutes = (time.monotonic() - start) / 60
    print(
        f'[{i + 1}/{len(grid)}, {minutes:.1f} min, {len(grid) - i - 1} '
        f'left] {cell["variant"]} N={cell["n"]} B={cell["batch"]} '
        f'{cell["mode"]}: ',
        end='',
        flush=True,
    )
    record = _measure(cell, failed)
    _add_flops(record, _best_peak(peaks))
    print(_describe(record), flush=True)
    report['results'].append(record)
    report['linrec_vs_softmax'] = _ratios(report['results'])
    report['machine']['load_avg_at_end'] = bench_common.load_avg()
    bench_common.write_json(output, report)
  peaks.append(_spawn({'variant': 'matmul_peak', 'size': _MATMUL.value}))
  report['matmul_peak_gflops'] = _best_peak(peaks)
  for record in report['results']:
    _add_flops(record, report['matmul_peak_gflops'])
  bench_common.write_json(output, report)
  print(
      f'\nfloat32 {_MATMUL.value}^3 matmul peak (best of start and end): '
      f'{report["matmul_peak_gflops"]:.0f} GFLOP/s'
  )
  print(f'\n{"variant":14} {"N":>5} {"B":>3} {"mode":5}  result')
  for r in report['results']:
    print(
        f'{r["variant"]:14} {r["n"]:5d} {r["batch"]:3d} {r["mode"]:5}  '
        f'{_describe(r)}'
    )
  for q in report['linrec_vs_softmax']:
    print(
        f'linrec vs softmax N={q["n"]} B={q["batch"]} {q["mode"]}: '
        f'{q["speedup"]:.1f}x faster, {q["memory_ratio"]:.1f}x less memory'
    )
  _plot(report['results'], idle, output)
  print(
      f'Wrote {output} (and its PNGs, if drawn) in '
      f'{(time.monotonic() - start) / 60:.1f} min'
  )


def _check_flags():
  """Stops with one line naming the first bad flag."""
  flag_checks.check_size_lists('lengths', 'batches')
  flag_checks.check_choices('modes', ('train', 'infer'))
  flag_checks.check_sizes('microbatches', 'repeats')
  flag_checks.check_positive_floats(
      'time_budget_s', 'timeout_s', 'min_free_gib'
  )
  flag_checks.check_fraction('memory_fraction')
  flag_checks.check_output('output', pathlib.Path(_OUTPUT.value))


def main(argv):
  failures.quiet_info_logs()
  with failures.user_errors():
    _check_flags()
    _main(argv)


def run():
  """The `linrec-benchmark` command."""
  cli.show_flags_in_help(__name__)
  app.run(main)


if __name__ == '__main__':
  run()
