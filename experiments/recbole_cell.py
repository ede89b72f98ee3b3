"""One PyTorch cell of the peer benchmark: RecBole 1.1.1's SASRec, one step.

Runs in the peers' virtual environment (torch, RecBole), started by
`experiments.benchmark_peers` in a process of its own:

  .venv-peers/bin/python -m experiments.recbole_cell --cell=JSON \
      --cell_output=PATH

The model is RecBole's own `SASRec` class, built from a config dict and a
catalogue stub instead of a RecBole dataset; `attention` 'linrec' swaps
`experiments.torch_linrec` into each layer (RecBole's `forward` is left as
it is, so it still builds its `[B, 1, N, N]` mask, which LinRec ignores, as
in the authors' setup). A step is RecBole's trainer step: `zero_grad`,
`calculate_loss` (full cross-entropy over the catalogue at each row's last
real position), `backward`, `Adam.step`, timed on the wall clock (and the
process's CPU time, all threads).
"""

import argparse
import json
import pathlib
import resource
import statistics
import time

import torch

from experiments import peer_inputs

ITEM_FIELD, LENGTH_FIELD = 'item_id', 'item_length'


class _Catalogue:
  """What RecBole's SequentialRecommender asks of a dataset: `num(field)`."""

  def __init__(self, num_items: int):
    self._ids = num_items + 1  # RecBole counts the padding id 0.

  def num(self, field: str) -> int:
    del field
    return self._ids


def recbole_config(model: dict, max_len: int) -> dict:
  """The RecBole config entries that SASRec reads, at the given size."""
  return {
      'USER_ID_FIELD': 'user_id',
      'ITEM_ID_FIELD': ITEM_FIELD,
      'LIST_SUFFIX': '_list',
      'ITEM_LIST_LENGTH_FIELD': LENGTH_FIELD,
      'NEG_PREFIX': 'neg_',
      'MAX_ITEM_LIST_LENGTH': max_len,
      'device': torch.device('cpu'),
      'n_layers': model['layers'],
      'n_heads': model['heads'],
      'hidden_size': model['hidden'],
      'inner_size': model['ffn'],
      'hidden_dropout_prob': model['dropout'],
      'attn_dropout_prob': model['dropout'],
      'hidden_act': 'gelu',
      'layer_norm_eps': 1e-12,
      'initializer_range': 0.02,
      'loss_type': 'CE',
  }


def _peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _matmul_peak(size: int, repeats: int) -> dict:
  """Median time of a `size`^3 float32 matmul with torch's threads."""
  a = torch.randn(size, size)
  b = torch.randn(size, size)
  torch.matmul(a, b)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    torch.matmul(a, b)
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  return {
      'size': size,
      'seconds': seconds,
      'gflops': 2 * size**3 / seconds / 1e9,
  }


def run_cell(cell: dict) -> dict:
  """Builds the model, takes warm-up and timed steps; returns the figures."""
  torch.set_num_threads(cell['threads'])
  torch.manual_seed(0)
  result = {'torch': torch.__version__, 'threads': torch.get_num_threads()}
  if cell['impl'] == 'idle':  # The runtime and RecBole, nothing big.
    # pylint: disable=g-import-not-at-top,unused-import
    from recbole.model.sequential_recommender import sasrec  # noqa: F401

    return dict(result, peak_rss_gib_self=_peak_rss_gib())
  if cell['impl'] == 'matmul_peak':
    return dict(result, **_matmul_peak(cell['size'], cell['repeats']))
  # pylint: disable=g-import-not-at-top
  from recbole.model.sequential_recommender.sasrec import SASRec
  from experiments import torch_linrec
  # pylint: enable=g-import-not-at-top
  model = SASRec(
      recbole_config(cell['model'], cell['n']),
      _Catalogue(cell['model']['num_items']),
  )
  if cell['attention'] == 'linrec':
    result['layers_swapped'] = torch_linrec.swap_in_linrec(model)
  model.train()
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  arrays = peer_inputs.load(cell['inputs'])
  interaction = {
      model.ITEM_SEQ: torch.from_numpy(arrays['inputs']).long(),
      model.ITEM_SEQ_LEN: torch.from_numpy(arrays['lengths']).long(),
      model.POS_ITEM_ID: torch.from_numpy(arrays['targets']).long(),
  }

  def step():
    start, cpu_start = time.perf_counter(), time.process_time()
    optimizer.zero_grad()
    loss = model.calculate_loss(interaction)
    loss.backward()
    optimizer.step()
    value = loss.item()
    return (time.perf_counter() - start, time.process_time() - cpu_start, value)

  warmup = [step()[0] for _ in range(cell['warmup'])]
  first, first_cpu, loss = step()
  times, cpu_times = [first], [first_cpu]
  while (
      len(times) < cell['repeats']
      and sum(times) + times[-1] <= cell['time_budget_s']
  ):
    wall, cpu, _ = step()
    times.append(wall)
    cpu_times.append(cpu)
  result.update(
      seconds=statistics.median(times),
      times_s=times,
      cpu_seconds=statistics.median(cpu_times),
      warmup_s=warmup,
      loss=loss,
      peak_rss_gib_self=_peak_rss_gib(),
      parameters=sum(p.numel() for p in model.parameters()),
  )
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--cell', required=True, help='The cell, as JSON.')
  parser.add_argument('--cell_output', required=True, help='Result JSON.')
  args = parser.parse_args()
  result = run_cell(json.loads(args.cell))
  pathlib.Path(args.cell_output).write_text(json.dumps(result))


if __name__ == '__main__':
  main()
