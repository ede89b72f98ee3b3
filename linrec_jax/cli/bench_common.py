"""Pieces shared by the benchmark scripts: isolated runs, machine, plots.

A benchmark cell runs in a fresh Python process so that its peak resident
set size (RSS) is its own. `run_isolated` starts that process, watches the
machine's available memory while it runs (killing it, not a neighbour, when
memory runs out), enforces a timeout, and reads the child's peak RSS from
`os.wait4`, which works even for a child that was killed.

This module imports neither JAX nor Matplotlib at import time, so a parent
process that only schedules cells stays small.
"""

import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time

GIB = 2**30
# How often a running cell's memory and clock are checked.
_POLL_S = 0.05
# Packages whose versions go into every report.
_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'numpy')


def meminfo_bytes(field):
  """Returns a `/proc/meminfo` field (e.g. 'MemAvailable') in bytes."""
  for line in pathlib.Path('/proc/meminfo').read_text().splitlines():
    if line.startswith(field + ':'):
      return int(line.split()[1]) * 1024
  raise KeyError(field)


def load_avg():
  """The 1, 5 and 15 minute load averages as a list."""
  return [round(x, 2) for x in os.getloadavg()]


def _cpu_model():
  for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
    if line.startswith('model name'):
      return line.split(':', 1)[1].strip()
  return platform.processor()


def _accelerators():
  """GPU names and memory from nvidia-smi, or [] on a machine without."""
  if not shutil.which('nvidia-smi'):
    return []
  query = subprocess.run(
      [
          'nvidia-smi',
          '--query-gpu=name,memory.total,driver_version',
          '--format=csv,noheader',
      ],
      capture_output=True,
      text=True,
      check=False,
  )
  return [line.strip() for line in query.stdout.splitlines() if line.strip()]


def machine():
  """The machine, software versions, load and date, for a report."""
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {
      'platform': platform.platform(),
      'cpu_model': _cpu_model(),
      'accelerators': _accelerators(),
      'cpu_count': os.cpu_count(),
      'cpus_usable': len(os.sched_getaffinity(0)),
      'mem_total_gib': meminfo_bytes('MemTotal') / GIB,
      'mem_available_gib_at_start': meminfo_bytes('MemAvailable') / GIB,
      'load_avg_at_start': load_avg(),
      'python': platform.python_version(),
      'versions': versions,
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(),
  }


def xla_flops(compiled):
  """XLA's FLOP count of a compiled computation, or None if it gives none.

  `compiled` is `jax.jit(f).lower(...).compile()`. The count is XLA's cost
  analysis of the whole program as compiled (padding included: it sees
  shapes, not data); a loop body is counted once, not once per iteration.
  """
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per program.
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get('flops')
  return float(flops) if flops and flops > 0 else None


def train_setup(
    model,
    num_items,
    *,
    lr=1e-3,
    microbatches=1,
    donate=False,
    compiler_options=None,
    **step_options,
):
  """What every step benchmark times: Adam, a train state, the train step.

  Args:
    model: a linen SASRec or BERT4Rec.
    num_items: real items (the cross-entropy runs over all of them).
    lr: Adam's learning rate (`optimizer.make_optimizer`).
    microbatches: gradient accumulation chunks of `steps.make_train_step`.
    donate: donate the state to the step (a timed loop that replaces it).
    compiler_options: XLA options of the step's `jax.jit`
      (`compiler_options.train_step_options`).
    **step_options: more `steps.make_train_step` arguments (e.g.
      `score_block_rows`).

  Returns:
    `(state, step)`: the `steps.TrainState` from key 0 (initialised under
    jit: an eager init runs op by op and takes seconds; the position table
    has max_len rows whatever the length of the dummy input), and
    `jax.jit` of the full cross-entropy train step.
  """
  # pylint: disable=g-import-not-at-top
  import jax
  from linrec_jax.training import optimizer
  from linrec_jax.training import steps
  # pylint: enable=g-import-not-at-top

  tx = optimizer.make_optimizer(lr=lr)
  state = jax.jit(lambda key: steps.create_train_state(model, tx, key, 8))(
      jax.random.key(0)
  )
  step = jax.jit(
      steps.make_train_step(
          model,
          tx,
          loss='ce',
          num_items=num_items,
          microbatches=microbatches,
          **step_options,
      ),
      donate_argnums=0 if donate else (),
      compiler_options=compiler_options,
  )
  return state, step


def useful_train_flops(batch, config, num_items):
  """Matrix-product FLOPs of one training step at the batch's real positions.

  Args:
    batch: a training batch (`inputs` `[B, L]`, `targets` `[B, L]`).
    config: the run's `TrainConfig` (hidden D, ffn F, heads, layers,
      attention).
    num_items: V - 1 (the scores cover V = num_items + 1 columns).

  Returns:
    3x the forward pass's multiply-adds x 2, padding excluded.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from linrec_jax.constants import PAD_ID  # pylint: disable=g-import-not-at-top

  d, f, layers = config.hidden, config.ffn, config.layers
  lengths = (
      (np.asarray(batch['inputs']) != PAD_ID).sum(axis=1).astype(np.float64)
  )
  per_position = 8 * d * d + 4 * d * f
  if config.attention == 'softmax':
    # Position t (from 1) attends to t positions: QK^T and AV, 2 D t each.
    attention = 4 * d * lengths * (lengths + 1) / 2
  else:
    # k v^T into the d_h x d_h state and q S out: 2 D d_h each, per position.
    attention = 4 * d * (d // config.heads) * lengths
  encoder = layers * (per_position * lengths + attention)
  targets = float((np.asarray(batch['targets']) != PAD_ID).sum())
  scores = 2 * d * (num_items + 1) * targets
  return 3 * float(encoder.sum() + scores)


def timed_runs(function, *args, repeats):
  """Seconds of `repeats` calls `function(*args)` (each waited for), after
  one untimed call that compiles and warms up."""
  import jax  # pylint: disable=g-import-not-at-top

  jax.block_until_ready(function(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(function(*args))
    times.append(time.perf_counter() - start)
  return times


def measure_matmul_peak(size=2048, repeats=7):
  """This machine's float32 matmul rate in JAX: a jitted `size`^3 matmul.

  Returns:
    A dict: `size`, `seconds` (the median of `repeats` runs after one
    warm-up run) and `gflops` (2 size^3 / seconds / 1e9).
  """
  import statistics  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  keys = jax.random.split(jax.random.key(0))
  a, b = (jax.random.normal(key, (size, size), 'float32') for key in keys)
  matmul = jax.jit(lambda a, b: a @ b).lower(a, b).compile()
  times = timed_runs(matmul, a, b, repeats=repeats)
  seconds = statistics.median(times)
  return {
      'size': size,
      'seconds': seconds,
      'times_s': times,
      'gflops': 2 * size**3 / seconds / 1e9,
  }


def _kill(proc):
  """Kills the child's whole process group (it is its own group leader)."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass


def run_isolated(args, *, cwd, timeout_s, min_available_bytes):
  """Runs `args` in a new process and waits, guarding time and memory.

  The child gets `--cell_output=PATH` appended and must write its result
  there as JSON. It is killed when it runs longer than `timeout_s` or when
  the machine's MemAvailable falls below `min_available_bytes` (so a cell
  that does not fit fails on its own instead of pushing the kernel's OOM
  killer onto other processes).

  Returns:
    A dict: `status` ('ok', 'timeout', 'out_of_memory' or 'failed'),
    `peak_rss_gib` (the child's peak RSS from `wait4`, also for a killed
    child), `wall_s`, `load_avg_start`, `load_avg_end`, the child's result
    fields when it succeeded, else `reason` and `stderr_tail`.
  """
  with tempfile.TemporaryDirectory() as tmp:
    out_path = pathlib.Path(tmp) / 'cell.json'
    err_path = pathlib.Path(tmp) / 'stderr.txt'
    load_start, start = load_avg(), time.monotonic()
    min_seen = meminfo_bytes('MemAvailable')
    with open(err_path, 'w') as err:
      proc = subprocess.Popen(
          args + [f'--cell_output={out_path}'],
          cwd=cwd,
          stdout=subprocess.DEVNULL,
          stderr=err,
          start_new_session=True,
      )
    killed = None
    while True:
      pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
      if pid:
        break
      available = meminfo_bytes('MemAvailable')
      min_seen = min(min_seen, available)
      if killed is None and available < min_available_bytes:
        killed = (
            'out_of_memory',
            f'killed by the benchmark: MemAvailable '
            f'{available / GIB:.2f} GiB < {min_available_bytes / GIB:.2f}'
            ' GiB while it ran',
        )
        _kill(proc)
      elif killed is None and time.monotonic() - start > timeout_s:
        killed = ('timeout', f'killed after the {timeout_s:.0f} s timeout')
        _kill(proc)
      time.sleep(_POLL_S)
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    record = {
        'peak_rss_gib': usage.ru_maxrss * 1024 / GIB,  # ru_maxrss is in KiB.
        'wall_s': time.monotonic() - start,
        'load_avg_start': load_start,
        'load_avg_end': load_avg(),
        'min_mem_available_gib': min_seen / GIB,
    }
    stderr_tail = err_path.read_text(errors='replace')[-3000:]
    if killed:
      record.update(status=killed[0], reason=killed[1])
    elif proc.returncode != 0:
      oom = (
          proc.returncode == -signal.SIGKILL
          or 'RESOURCE_EXHAUSTED' in stderr_tail
          or 'MemoryError' in stderr_tail
      )
      record.update(
          status='out_of_memory' if oom else 'failed',
          reason=f'exit code {proc.returncode}'
          + (' (killed or out of memory)' if oom else ''),
      )
    else:
      record.update({'status': 'ok', **json.loads(out_path.read_text())})
    if record['status'] != 'ok':
      record['stderr_tail'] = stderr_tail
  return record


def write_json(path, report):
  """Writes `report` atomically (a reader never sees half a file)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(path.suffix + '.tmp')
  tmp.write_text(json.dumps(report, indent=2) + '\n')
  tmp.replace(path)


def plot_grid(
    records, *, value, ylabel, title, path, series, panels, hline=None
):
  """Plots of `value` against N (log x), one line per series, per panel.

  The y axis is logarithmic when the values span a decade or more, linear
  from 0 otherwise; ticks are plain numbers at the measured lengths; the
  title is wrapped to the figure's width.

  Args:
    records: measured records (dicts with 'n' and `value`).
    value: the record field on the y axis.
    ylabel: its axis label.
    title: the figure title.
    path: where the PNG goes.
    series: the series names, in legend order; a record's series is its
      'variant'.
    panels: a list of `(label, predicate)`; one subplot per panel shows the
      records the predicate accepts.
    hline: optional `(y, label)` drawn as a dashed line in every panel.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  cols = min(2, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(
      rows, cols, figsize=(6.5 * cols, 4.5 * rows), squeeze=False
  )
  plain = ticker.FuncFormatter(lambda v, _: f'{v:g}')
  for ax, (label, accept) in zip(axes.flat, panels):
    shown = [r for r in records if accept(r)]
    for name in series:
      points = sorted((r['n'], r[value]) for r in shown if r['variant'] == name)
      if points:
        ax.plot(*zip(*points), marker='o', label=name)
    if hline:
      ax.axhline(hline[0], color='gray', linestyle='--', label=hline[1])
    ax.set(xscale='log', xlabel='sequence length N', ylabel=ylabel, title=label)
    lengths = sorted({r['n'] for r in shown})
    if lengths:
      # Ticks at the measured lengths, written as plain numbers.
      ax.set_xticks(lengths)
      ax.xaxis.set_major_formatter(plain)
      ax.xaxis.set_minor_locator(ticker.NullLocator())
      ax.tick_params(axis='x', labelrotation=45 if len(lengths) > 5 else 0)
    values = [r[value] for r in shown] + ([hline[0]] if hline else [])
    values = [v for v in values if v and v > 0]
    if values and max(values) / min(values) >= 10:
      ax.set_yscale('log')
      ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
      ax.yaxis.set_major_formatter(plain)
      ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    else:
      # Less than a decade: a linear axis reads better than log minor ticks.
      ax.set_ylim(0, max(values, default=1) * 1.15)
      ax.yaxis.set_major_formatter(plain)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize='small')
  for ax in list(axes.flat)[len(panels) :]:
    ax.axis('off')
  fig.suptitle(
      textwrap.fill(title, width=int(15 * 6.5 * cols / 1.2)), fontsize=10
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
