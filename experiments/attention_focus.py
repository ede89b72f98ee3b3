r"""Where trained encoders put their attention, one row per run and block.

  python -m experiments.attention_focus \
      --workdirs=runs/cpu_ml1m_softmax,runs/cpu_ml1m_linrec --num_users=1024

For the first --num_users users (validation inputs, as the evaluation builds
them), takes each block's attention weights of the query that predicts the
next item (`linrec_jax.analysis.inspection`) and prints their means over users and
heads: the share of sum |w| on the --recent_items latest items, the largest single
share, the share on negative weights, and the effective number of keys.
Writes them as JSON to --json_output.
"""

import json

from absl import app
from absl import flags
from absl import logging
import jax.numpy as jnp
import numpy as np

from linrec_jax import data
from linrec_jax.analysis import inspection
from linrec_jax.constants import PAD_ID
from linrec_jax.serving import restore

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'training workdirs')
_USERS = flags.DEFINE_integer('num_users', 1024, 'users to inspect')
_RECENT = flags.DEFINE_integer(
    'recent_items', 5, 'latest items counted as recent'
)
_BATCH = flags.DEFINE_integer(
    'forward_batch_size', 128, 'users per forward pass'
)
_OUTPUT = flags.DEFINE_string('json_output', None, 'JSON path (optional)')
flags.mark_flag_as_required('workdirs')


def run_focus(workdir, users, recent, batch_size):
  """Mean focus statistics per block of one run: a list of dicts."""
  trained = restore.load_trained(workdir)
  config, model = trained.config, trained.model
  sums, count = None, 0
  batches = data.eval_batches(
      trained.seqs,
      data.VALID,
      max_len=config.max_len,
      batch_size=batch_size,
      pad_side=config.pad_side,
      mask_token=getattr(model, 'mask_token', None),
  )
  for batch in batches:
    rows = np.flatnonzero(batch['valid'])[: users - count]
    inputs = jnp.asarray(batch['inputs'][rows])
    positions = jnp.asarray(batch['positions'][rows])
    mask = inputs != PAD_ID
    causal = getattr(model, 'causal', False)
    # The keys the predicting query sees: padding too when it is unmasked.
    visible = mask if config.mask_padding else jnp.ones_like(mask)
    if causal:
      visible &= jnp.arange(inputs.shape[1])[None] <= positions[:, None]
    blocks = inspection.layer_queries_and_keys(model, trained.params, inputs)
    decay_logits = inspection.layer_decay_logits(model, trained.params)
    stats = []
    for (query, key), decay_logit in zip(blocks, decay_logits):
      weights = inspection.attention_weights(
          config.attention,
          query,
          key,
          mask=mask if config.mask_padding else None,
          causal=causal,
          decay_logit=decay_logit,
      )
      row_weights = weights[jnp.arange(len(rows)), :, positions]
      stats.append(
          {
              name: float(jnp.sum(value))
              for name, value in inspection.focus(
                  row_weights, visible, recent
              ).items()
          }
      )
    sums = (
        stats
        if sums is None
        else [
            {name: a[name] + b[name] for name in a} for a, b in zip(sums, stats)
        ]
    )
    count += len(rows)
    if count >= users:
      break
  heads = config.heads
  return [
      {name: value / (count * heads) for name, value in block.items()}
      for block in sums
  ]


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax is chatty at INFO.
  report = {}
  print(
      f'{"run":34} block  recent  top  negative  effective keys  '
      f'(uniform recent)'
  )
  for workdir in _WORKDIRS.value:
    report[workdir] = run_focus(
        workdir, _USERS.value, _RECENT.value, _BATCH.value
    )
    for index, block in enumerate(report[workdir]):
      print(
          f'{workdir[-34:]:34} {index:5d}  {block["recent_share"]:.3f}  '
          f'{block["top_share"]:.3f}  {block["negative_share"]:.3f}  '
          f'{block["effective_keys"]:14.1f}  '
          f'({block["uniform_recent_share"]:.3f})'
      )
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'w') as f:
      json.dump(
          {'users': _USERS.value, 'recent': _RECENT.value, 'runs': report},
          f,
          indent=2,
      )


if __name__ == '__main__':
  app.run(main)
