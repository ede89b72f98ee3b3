r"""One epoch of batch-128 SASRec on ML-1M: the former step against today's.

The configuration is `BATCH_128` (hidden 64, 4 heads, FFN 128, every
200-item window of each ML-1M history in batches of 128, 67 steps), the
`cpu` preset before it moved to batch 32. Three layouts of its training
set:

- `padded_whole_scores`: padded batches, the full softmax scored over all
  `[B * 200, V]` positions at once (`score_block_rows=None`): the step as
  it was before blockwise scoring.
- `padded`: padded batches, the full softmax a block of 1,024 positions at
  a time, padded targets skipped (`losses.blockwise_cross_entropy`).
- `bucketed`: `--length_bucket=W` groups rows of similar length and crops
  each batch to a multiple of W (43 % of padded positions are padding),
  with blockwise scoring.

For each layout this times the jitted training step (forward with dropout,
backward, Adam) of the preset's SASRec on `--sample` batches of an epoch
drawn at random (the same indices for all), in round-robin passes so that
varying load from other processes hits all alike, after compiling every
batch width once. An epoch's time is the mean step time times the batches
per epoch. Useful FLOPs count the matrix products of forward and backward
(3x the forward's) at real positions only: per layer the Q, K, V and output
projections (8 D^2), the FFN (4 D F) and the attention (softmax: 4 D t at
position t, causal; linrec: 4 D d_h for its state), and 2 D V per real
target for the scores; their rate is divided by the fp32 matmul rate of
JAX measured on this machine at the start and the end of the same run
(the better of the two). The padded layouts' losses are compared on the
same batch and state: blockwise scoring must give the same loss.

`cpu_preset` times today's `cpu` preset the same way (batch 32, 2 heads,
FFN 256, its length buckets, blockwise scores, attention-weight dropout for
softmax): the step whose share of the matmul peak the throughput issue
asks about. `cpu_preset_parts` splits that step on the epoch's batch whose
width is nearest the mean (medians of `--part_repeats` runs, each part
jitted alone): the whole step, the step without dropout, the encoder's
forward, its forward and backward with and without dropout, the blockwise
cross-entropy's forward and backward on the encoder's states, and Adam's
update.

  python -m experiments.benchmark_epoch --output=benchmarks/epoch_cpu.json
"""

import json
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from data_prep import datasets
from linrec_jax import configs
from linrec_jax import data
from linrec_jax import losses
from linrec_jax import models
from linrec_jax.cli import bench_common
from linrec_jax.constants import PAD_ID
from linrec_jax.training import optimizer
from linrec_jax.training import steps
from linrec_jax.training import train

_ATTENTIONS = flags.DEFINE_list(
    'attentions', ['linrec', 'softmax'], 'Attention variants.'
)
_BUCKET = flags.DEFINE_integer('length_bucket', 25, 'Bucket width W.')
_SAMPLE = flags.DEFINE_integer('sample', 16, 'Batches timed per layout.')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Timed passes per batch.')
_DATA_ROOT = flags.DEFINE_string('data_root', None, 'raw datasets')
_PREPARED = flags.DEFINE_string('prepared_root', 'prepared', 'prepared arrays')
_PART_REPEATS = flags.DEFINE_integer(
    'part_repeats', 12, 'Timed runs of each part of the preset step.'
)
_OUTPUT = flags.DEFINE_string(
    'output', 'benchmarks/epoch_cpu.json', 'Where the JSON report goes.'
)

# What differs from today's `cpu` preset in the configuration measured.
BATCH_128 = dict(
    heads=4,
    ffn=128,
    batch_size=128,
    lr=2e-3,
    lr_schedule='cosine',
    warmup_steps=100,
    length_bucket=0,
    loss_normalizer='batch',
    attention_dropout=0.0,
)

# (name, length bucket width or None for the flag's, score block rows).
_LAYOUTS = (
    ('padded_whole_scores', 0, None),
    ('padded', 0, losses.BLOCK_ROWS),
    ('bucketed', None, losses.BLOCK_ROWS),
)


def _time(step, state, batch, rng):
  start = time.perf_counter()
  state, out = step(state, batch, rng)
  jax.block_until_ready(out)
  return time.perf_counter() - start, state


def _compile_widths(step, state, epoch, rng):
  """Runs one batch of each width of `epoch` (compiling each); the state."""
  for width in sorted({b['inputs'].shape[1] for b in epoch}):
    _, state = _time(
        step,
        state,
        next(b for b in epoch if b['inputs'].shape[1] == width),
        rng,
    )
  return state


def measure(seqs, attention, bucket, sample, repeats):
  """Per-layout step times, epoch estimates, FLOP rates and slots."""
  preset = configs.get_config(
      'cpu', dataset='ml-1m', model='sasrec', attention=attention
  )
  config = configs.to_train_config(dict(preset.to_dict(), **BATCH_128))
  model = models.make_model(config, seqs.num_items)
  rng = jax.random.key(1)
  layouts = {}
  for name, width, block_rows in _LAYOUTS:
    state, step = bench_common.train_setup(
        model, seqs.num_items, lr=config.lr, score_block_rows=block_rows
    )
    loader = data.TrainBatches(
        seqs,
        mode='all',
        max_len=config.max_len,
        batch_size=config.batch_size,
        seed=config.seed,
        windows_per_user=config.windows_per_user,
        length_bucket=bucket if width is None else width,
    )
    layouts[name] = (loader, step)
  # Every layout's state comes from key 0: the same parameters; all start here.
  fresh_state = state
  batches = layouts['padded'][0].num_batches
  picked = np.random.default_rng(0).choice(batches, sample, replace=False)
  first = layouts['padded'][0].batch(0, int(picked[0]))
  same_batch_loss = {
      name: float(layouts[name][1](fresh_state, first, rng)[1]['loss'])
      for name in ('padded_whole_scores', 'padded')
  }
  report = {}
  states = {}
  for name, (loader, step) in layouts.items():
    epoch = [loader.batch(0, i) for i in range(batches)]
    states[name] = _compile_widths(step, fresh_state, epoch, rng)
    report[name] = {
        'widths': sorted({b['inputs'].shape[1] for b in epoch}),
        'slots_per_epoch': int(sum(b['inputs'].size for b in epoch)),
        'real_targets_per_epoch': int(
            sum((b['targets'] != PAD_ID).sum() for b in epoch)
        ),
        'useful_flops_per_epoch': sum(
            bench_common.useful_train_flops(b, config, seqs.num_items)
            for b in epoch
        ),
        'times': [],
    }
  for _ in range(repeats):
    for index in picked:
      for name, (loader, step) in layouts.items():
        seconds, states[name] = _time(
            step, states[name], loader.batch(0, int(index)), rng
        )
        report[name]['times'].append(seconds)
  for entry in report.values():
    entry['mean_step_s'] = statistics.fmean(entry.pop('times'))
    entry['epoch_s'] = entry['mean_step_s'] * batches
    entry['useful_gflops_per_s'] = (
        entry['useful_flops_per_epoch'] / entry['epoch_s'] / 1e9
    )
  report['batches_per_epoch'] = batches
  report['same_batch_loss'] = same_batch_loss
  before = report['padded_whole_scores']['epoch_s']
  report['speedup_padded'] = before / report['padded']['epoch_s']
  report['speedup_bucketed'] = before / report['bucketed']['epoch_s']
  return report


def measure_preset(seqs, attention, sample, repeats):
  """Today's `cpu` preset as it trains (batch 32, its length buckets,
  blockwise scores): mean step time, epoch estimate and useful FLOP rate
  over `sample` random batches of an epoch, each timed `repeats` times
  after every batch width is compiled."""
  preset = configs.get_config(
      'cpu', dataset='ml-1m', model='sasrec', attention=attention
  )
  config = configs.to_train_config(preset.to_dict())
  model = models.make_model(config, seqs.num_items)
  state, step = bench_common.train_setup(
      model, seqs.num_items, lr=config.lr, score_block_rows=losses.BLOCK_ROWS
  )
  loader = train.make_loader(config, seqs, model)
  rng = jax.random.key(1)
  epoch = [loader.batch(0, i) for i in range(loader.num_batches)]
  state = _compile_widths(step, state, epoch, rng)
  picked = np.random.default_rng(0).choice(len(epoch), sample, replace=False)
  times = []
  for _ in range(repeats):
    for index in picked:
      seconds, state = _time(step, state, epoch[index], rng)
      times.append(seconds)
  flops = repeats * sum(
      bench_common.useful_train_flops(epoch[index], config, seqs.num_items)
      for index in picked
  )
  return {
      'batch_size': config.batch_size,
      'length_bucket': config.length_bucket,
      'heads': config.heads,
      'ffn': config.ffn,
      'attention_dropout': config.attention_dropout,
      'batches_per_epoch': len(epoch),
      'mean_step_s': statistics.fmean(times),
      'epoch_s': statistics.fmean(times) * len(epoch),
      'useful_gflops_per_s': flops / sum(times) / 1e9,
  }


def _median_ms(function, *args, repeats):
  return 1e3 * statistics.median(
      bench_common.timed_runs(function, *args, repeats=repeats)
  )


def measure_preset_parts(seqs, attention, repeats):
  """Milliseconds of the parts of today's `cpu` preset step, each jitted
  alone, on the epoch's batch whose width is nearest the mean width."""
  preset = configs.get_config(
      'cpu', dataset='ml-1m', model='sasrec', attention=attention
  )
  values = preset.to_dict()
  config = configs.to_train_config(values)
  undropped = configs.to_train_config(
      dict(values, dropout=0.0, attention_dropout=0.0)
  )
  model = models.make_model(config, seqs.num_items)
  loader = train.make_loader(config, seqs, model)
  widths = [
      loader.batch(0, i)['inputs'].shape[1] for i in range(loader.num_batches)
  ]
  index = int(np.argmin(np.abs(np.asarray(widths) - np.mean(widths))))
  batch = loader.batch(0, index)
  rng = jax.random.key(1)
  parts = {}
  for name, step_model in (
      ('step', model),
      ('step_without_dropout', models.make_model(undropped, seqs.num_items)),
  ):
    state, step = bench_common.train_setup(
        step_model,
        seqs.num_items,
        lr=config.lr,
        score_block_rows=losses.BLOCK_ROWS,
    )
    parts[name] = _median_ms(step, state, batch, rng, repeats=repeats)
  # Both states come from key 0: the same parameters.
  params = state.params

  def states(params, deterministic):
    return steps.scored_states(
        model,
        {'params': params},
        batch['inputs'],
        batch['positions'],
        deterministic=deterministic,
        rngs={'dropout': rng},
    )

  forward = jax.jit(states, static_argnums=1)
  encoder_grad = jax.jit(
      jax.grad(lambda p, d: jnp.sum(states(p, d) * 0.01)), static_argnums=1
  )
  parts['encoder_forward'] = _median_ms(forward, params, False, repeats=repeats)
  parts['encoder_forward_backward'] = _median_ms(
      encoder_grad, params, False, repeats=repeats
  )
  parts['encoder_forward_backward_without_dropout'] = _median_ms(
      encoder_grad, params, True, repeats=repeats
  )
  table = model.apply({'params': params}, method='item_embeddings')
  bias = model.apply({'params': params}, method='item_bias')
  flat_targets = batch['targets'].reshape(-1)
  scores_grad = jax.jit(
      jax.grad(
          lambda s, t, b: losses.blockwise_cross_entropy(
              s.reshape(-1, s.shape[-1]), t, b, flat_targets
          )[0],
          argnums=(0, 1, 2),
      )
  )
  parts['cross_entropy_forward_backward'] = _median_ms(
      scores_grad, forward(params, False), table, bias, repeats=repeats
  )
  tx = optimizer.make_optimizer(lr=config.lr)
  update = jax.jit(tx.update)
  parts['adam_update'] = _median_ms(
      update,
      jax.tree.map(jnp.ones_like, params),
      state.opt_state,
      params,
      repeats=repeats,
  )
  return {
      'batch_shape': list(batch['inputs'].shape),
      'real_targets': int((batch['targets'] != PAD_ID).sum()),
      'useful_gflop': bench_common.useful_train_flops(
          batch, config, seqs.num_items
      )
      / 1e9,
      'median_ms': parts,
  }


def main(argv):
  del argv
  data_dir = datasets.prepared_dir('ml-1m', _DATA_ROOT.value, _PREPARED.value)
  seqs = data.load(data_dir)
  peaks = [bench_common.measure_matmul_peak()]
  result = {
      'machine': bench_common.machine(),
      'what': __doc__.split('\n\n', 1)[1].split('\n\n  python')[0],
      'length_bucket': _BUCKET.value,
      'sample': _SAMPLE.value,
      'repeats': _REPEATS.value,
      'cells': {},
      'cpu_preset': {},
      'cpu_preset_parts': {},
  }
  for attention in _ATTENTIONS.value:
    cell = measure(
        seqs, attention, _BUCKET.value, _SAMPLE.value, _REPEATS.value
    )
    result['cells'][attention] = cell
    result['cpu_preset'][attention] = measure_preset(
        seqs, attention, _SAMPLE.value, _REPEATS.value
    )
    result['cpu_preset_parts'][attention] = measure_preset_parts(
        seqs, attention, _PART_REPEATS.value
    )
  peaks.append(bench_common.measure_matmul_peak())
  peak = max(p['gflops'] for p in peaks)
  result['matmul_peak'] = {'runs': peaks, 'gflops': peak}
  for attention, cell in result['cells'].items():
    for name, _, _ in _LAYOUTS:
      cell[name]['share_of_matmul_peak'] = (
          cell[name]['useful_gflops_per_s'] / peak
      )
    print(
        f"{attention}: epoch {cell['padded_whole_scores']['epoch_s']:.0f} s "
        f"before, {cell['padded']['epoch_s']:.0f} s padded "
        f"({cell['speedup_padded']:.2f}x), "
        f"{cell['bucketed']['epoch_s']:.0f} s with buckets of "
        f"{_BUCKET.value} ({cell['speedup_bucketed']:.2f}x); useful "
        f"{cell['bucketed']['useful_gflops_per_s']:.1f} GFLOP/s = "
        f"{100 * cell['bucketed']['share_of_matmul_peak']:.1f} % of the "
        f'{peak:.0f} GFLOP/s matmul peak; same-batch loss '
        f"{cell['same_batch_loss']['padded_whole_scores']:.6f} (whole) / "
        f"{cell['same_batch_loss']['padded']:.6f} (blockwise)",
        flush=True,
    )
  for attention, cell in result['cpu_preset'].items():
    cell['share_of_matmul_peak'] = cell['useful_gflops_per_s'] / peak
    print(
        f"{attention}, today's cpu preset (batch {cell['batch_size']}, "
        f"buckets of {cell['length_bucket']}): {cell['mean_step_s']:.3f} s "
        f"a step, epoch {cell['epoch_s']:.0f} s; useful "
        f"{cell['useful_gflops_per_s']:.1f} GFLOP/s = "
        f"{100 * cell['share_of_matmul_peak']:.1f} % of the matmul peak",
        flush=True,
    )
  for attention, cell in result['cpu_preset_parts'].items():
    parts = ', '.join(f'{k} {v:.1f}' for k, v in cell['median_ms'].items())
    print(
        f'{attention}, parts of the preset step on a batch of '
        f"{cell['batch_shape']} (ms): {parts}",
        flush=True,
    )
  result['load_avg_at_end'] = bench_common.load_avg()
  with open(_OUTPUT.value, 'w') as f:
    json.dump(result, f, indent=2)
  print(f'wrote {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
