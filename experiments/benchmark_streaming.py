r"""Latency of one new interaction: streaming update vs full re-encoding.

For B users with histories of n items, one new interaction costs
  streaming:        `linrec_jax.serving.streaming.update` of the B states (O(1) in n);
  re-encode linrec: the causal LinRec SASRec forward pass over the n items;
  re-encode softmax: the same model with causal softmax attention,
each measured to the top layer's state at the last position (scoring all
items is the same for all three and is timed once, separately). Official
model size (hidden 128, 8 heads, 2 layers, FFN 256), random parameters, the
ML-1M item count, float32, AOT-compiled; medians of the timed runs after one
untimed run. The streaming update is timed in round-robin passes over the
lengths, so that load from other processes that varies over time does not
masquerade as a dependence on n.

The comparison is exact: max_len defaults to the longest re-encoded length,
so up to it streaming gives the same scores as re-encoding all n items (the
check is recorded). Lengths past max_len are streamed with clamped positions
(`linrec_jax.serving.streaming`); the full model cannot take them and re-encodes its
last max_len items instead, so those rows repeat the max_len timing and
their results differ by design. With the official max_len = 200 the
re-encode cost stops growing at n = 200 (its row here).

  python -m experiments.benchmark_streaming --lengths=10,50,100,200,400,800,1600
"""

import dataclasses
import datetime
import functools
import json
import os
import pathlib
import platform
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from linrec_jax import models
from linrec_jax.cli import failures
from linrec_jax.cli import flag_checks
from linrec_jax.serving import streaming

NUM_ITEMS = 3416  # ML-1M.
OFFICIAL = dict(hidden=128, heads=8, layers=2, ffn=256, dropout=0.0)
STREAM_CALLS_PER_ROUND = 5

_LENGTHS = flags.DEFINE_list(
    'lengths',
    ['10', '50', '100', '200', '400', '800', '1600'],
    'history lengths n',
)
_MAX_LEN = flags.DEFINE_integer(
    'max_len', 800, 'rows of the position table; re-encoding is capped here'
)
_BATCH = flags.DEFINE_integer('batch', 1000, 'users per update')
_CHUNK = flags.DEFINE_integer(
    'users_per_chunk',
    50,
    're-encoding runs over this many users at a time '
    '(lax.map) so softmax scores fit in memory',
)
_BUDGET = flags.DEFINE_float('budget_s', 10.0, 'timed seconds per cell')
_MAX_RUNS = flags.DEFINE_integer('max_runs', 50, 'timed runs per cell at most')
_ROUNDS = flags.DEFINE_integer(
    'rounds',
    20,
    'round-robin passes over the lengths timing the streaming update',
)
_OUT = flags.DEFINE_string(
    'out',
    'benchmarks/streaming_cpu',
    'output path without extension (.json, .png)',
)


def _machine():
  device = jax.devices()[0]
  return {
      'platform': platform.platform(),
      'processor': platform.processor(),
      'cpu_count': os.cpu_count(),
      'device': device.device_kind,
      'backend': jax.default_backend(),
      'jax': jax.__version__,
      'load_avg_1m_at_start': os.getloadavg()[0],
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(),
  }


def _time(compiled, *args):
  """Median and minimum seconds of `compiled(*args)`, within the budget.

  The arguments are made ready first and one untimed run goes before, so
  that no earlier asynchronous work (e.g. feeding the state) is counted.
  """
  jax.block_until_ready(args)
  jax.block_until_ready(compiled(*args))
  times = []
  while len(times) < _MAX_RUNS.value and (
      not times or sum(times) < _BUDGET.value
  ):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return {
      'median_s': statistics.median(times),
      'min_s': min(times),
      'runs': len(times),
  }


def _compile(fn, *args):
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - start


def _reencode_fn(model, chunk):
  """`(params, inputs [B, n]) -> [B, D]` last-position states, by chunks."""

  def one(params, inputs):
    return model.apply({'params': params}, inputs)[:, -1]

  def run(params, inputs):
    batch, length = inputs.shape
    chunks = inputs.reshape(batch // chunk, chunk, length)
    states = lax.map(functools.partial(one, params), chunks)
    return states.reshape(batch, -1)

  return run


def _plot(rows, max_len, path, machine):
  """Latency against n, log-log; re-encoding past max_len is dashed."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, ax = plt.subplots(figsize=(7, 4.5))
  n = np.array([r['n'] for r in rows])
  ms = lambda key: np.array([r[key]['median_s'] * 1e3 for r in rows])
  ax.plot(n, ms('streaming'), 'o-', label='streaming update (LinRec)')
  past = f're-encode of the last {max_len} (n > max_len)'
  for key, marker, label in (
      ('reencode_linrec', 's', 'LinRec'),
      ('reencode_softmax', '^', 'softmax'),
  ):
    inside = n <= max_len
    (line,) = ax.plot(
        n[inside],
        ms(key)[inside],
        marker + '-',
        label=f'full re-encode, {label}',
    )
    last = max(int(inside.sum()) - 1, 0)
    if last < len(n) - 1:
      ax.plot(
          n[last:],
          ms(key)[last:],
          marker + '--',
          mfc='none',
          color=line.get_color(),
          label=past,
      )
      past = None
  ax.axvline(max_len, color='grey', ls=':', lw=1)
  ax.text(
      max_len,
      0.5,
      f'max_len={max_len} ',
      color='grey',
      fontsize=7,
      ha='right',
      transform=ax.get_xaxis_transform(),
  )
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_xlabel('history length n (items)')
  ax.set_ylabel(f'ms per new interaction, {rows[0]["batch"]} users')
  ax.set_title(
      'SASRec (hidden 128, 8 heads, 2 layers), float32, '
      f'{machine["device"]}, {machine["cpu_count"]} cores shared '
      'with other jobs',
      fontsize=8,
  )
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def _stream_times(update, params, states, items, rounds):
  """Per length, the update latencies of `rounds` round-robin passes.

  Lengths are visited in turn within each pass, so contention from other
  processes that varies over time spreads evenly over them.
  """
  jax.block_until_ready((states, items))
  for n in states:
    jax.block_until_ready(update(params, states[n], items[n]))
  times = {n: [] for n in states}
  for _ in range(rounds):
    for n in states:
      for _ in range(STREAM_CALLS_PER_ROUND):
        start = time.perf_counter()
        jax.block_until_ready(update(params, states[n], items[n]))
        times[n].append(time.perf_counter() - start)
  return {
      n: {'median_s': statistics.median(t), 'min_s': min(t), 'runs': len(t)}
      for n, t in times.items()
  }


def _main(argv):
  del argv
  lengths = sorted(int(n) for n in _LENGTHS.value)
  batch, chunk, max_len = _BATCH.value, _CHUNK.value, _MAX_LEN.value
  if batch % chunk:
    raise ValueError(
        f'--batch={batch} is not a multiple of --users_per_chunk={chunk}'
    )
  machine = _machine()
  linrec = models.SASRec(
      NUM_ITEMS,
      models.EncoderConfig(
          max_len=max_len, attention='linrec', causal=True, **OFFICIAL
      ),
  )
  soft = linrec.clone(
      config=dataclasses.replace(linrec.config, attention='softmax')
  )
  params = linrec.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
  params = params['params']  # The same tree serves both attentions.
  rng = np.random.default_rng(0)
  histories = jnp.asarray(
      rng.integers(1, NUM_ITEMS + 1, (batch, max(lengths))), jnp.int32
  )

  # The state after n - 1 items, for every n; the timed update adds item n.
  state = streaming.init_state(params, batch, model=linrec)
  update, compile_s = _compile(streaming.update, params, state, histories[:, 0])
  scores, _ = _compile(streaming.scores, params, state)
  states, fed = {}, 0
  for n in lengths:
    state = jax.block_until_ready(
        streaming.feed(params, state, histories[:, fed : n - 1])
    )
    states[n], fed = state, n - 1
  items = {n: histories[:, n - 1] for n in lengths}
  stream = _stream_times(update, params, states, items, _ROUNDS.value)
  result = {
      'what': __doc__.split('\n\n')[1],
      'batch': batch,
      'max_len': max_len,
      'users_per_chunk': chunk,
      'model': dict(OFFICIAL, num_items=NUM_ITEMS),
      'machine': machine,
      'compile_s': {'streaming_update': compile_s},
      'scoring_all_items': _time(scores, params, state),
      'rows': [],
  }
  print(
      f'{machine["device"]}, {machine["cpu_count"]} cores (shared), load '
      f'{machine["load_avg_1m_at_start"]:.1f}; B={batch}, max_len={max_len}'
      f'; scoring {NUM_ITEMS} items: '
      f'{result["scoring_all_items"]["median_s"] * 1e3:.1f} ms',
      flush=True,
  )
  print(
      f'{"n":>6} {"stream ms":>10} {"(min)":>7} {"re-enc linrec ms":>17} '
      f'{"re-enc softmax ms":>18} {"max |diff|":>11}',
      flush=True,
  )
  reencoded = {}
  for n in lengths:
    row = {'n': n, 'batch': batch, 'streaming': stream[n]}
    width = min(n, max_len)
    if width not in reencoded:
      inputs = histories[:, n - width : n]
      cells = {}
      for name, model in (('linrec', linrec), ('softmax', soft)):
        fn, seconds = _compile(_reencode_fn(model, chunk), params, inputs)
        result['compile_s'][f'reencode_{name}_{width}'] = seconds
        cells[name] = _time(fn, params, inputs)
        if name == 'linrec':
          full = model.apply(
              {'params': params}, fn(params, inputs), method='logits'
          )
      reencoded[width] = cells, full
    cells, full = reencoded[width]
    row['reencode_linrec'], row['reencode_softmax'] = (
        cells['linrec'],
        cells['softmax'],
    )
    row['reencode_length'] = width
    new_state = update(params, states[n], items[n])
    row['max_abs_diff_vs_linrec_reencode'] = float(
        jnp.abs(scores(params, new_state) - full).max()
    )
    row['streaming_equals_reencode'] = n <= max_len
    result['rows'].append(row)
    note = f'  (past max_len: last {width} re-encoded)' if n > max_len else ''
    print(
        f'{n:>6} {row["streaming"]["median_s"] * 1e3:>10.2f} '
        f'{row["streaming"]["min_s"] * 1e3:>7.2f} '
        f'{cells["linrec"]["median_s"] * 1e3:>17.1f} '
        f'{cells["softmax"]["median_s"] * 1e3:>18.1f} '
        f'{row["max_abs_diff_vs_linrec_reencode"]:>11.2e}{note}',
        flush=True,
    )
  machine['load_avg_1m_at_end'] = os.getloadavg()[0]
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix('.json').write_text(json.dumps(result, indent=2) + '\n')
  _plot(result['rows'], max_len, out.with_suffix('.png'), machine)
  print(f'wrote {out.with_suffix(".json")} and {out.with_suffix(".png")}')


def _check_flags():
  """Stops with one line naming the first bad flag."""
  flag_checks.check_size_lists('lengths')
  flag_checks.check_sizes(
      'max_len', 'batch', 'users_per_chunk', 'max_runs', 'rounds'
  )
  flag_checks.check_positive_floats('budget_s')
  flag_checks.check_output('out', _OUT.value + '.json')
  flag_checks.check_model_fits(
      models.SASRec(
          NUM_ITEMS,
          models.EncoderConfig(
              max_len=_MAX_LEN.value,
              attention='linrec',
              causal=True,
              **OFFICIAL,
          ),
      ),
      _MAX_LEN.value,
      '--max_len',
  )
  flag_checks.check_bytes_fit(
      '--batch, --lengths', 4 * _BATCH.value * max(map(int, _LENGTHS.value))
  )


def main(argv):
  failures.quiet_info_logs()
  with failures.user_errors():
    _check_flags()
    _main(argv)


if __name__ == '__main__':
  app.run(main)
