"""Tests of the peer benchmark: its inputs, report and PyTorch LinRec.

The helpers run everywhere. The PyTorch checks run only where the peers'
virtual environment (`.venv-peers`, made by `make bench-peers`) exists, in
a subprocess with that interpreter; elsewhere they are skipped.
"""

import json
import math
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from experiments import benchmark_peers
from experiments import peer_inputs
from experiments import peer_report

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PEERS_PYTHON = REPO_ROOT / '.venv-peers' / 'bin' / 'python'
needs_peers_venv = pytest.mark.skipif(
    not PEERS_PYTHON.is_file(),
    reason=f'{PEERS_PYTHON} not found: make it with `make bench-peers` (or '
    'python -m experiments.benchmark_peers) to test the PyTorch LinRec',
)


def test_prefix_lengths_by_hand():
  # Users with 3, 1 and 4 training items: samples of length 1, 2 | none |
  # 1, 2, 3; clipped at N = 2.
  lengths = peer_inputs.prefix_lengths(np.array([3, 1, 4]), max_len=2)
  np.testing.assert_array_equal(lengths, [1, 2, 1, 2, 2])


def test_padding_share_by_hand():
  assert peer_inputs.padding_share(np.array([1, 4]), 4) == pytest.approx(3 / 8)


def test_draw_batch_pads_right_after_each_length():
  pool = np.array([1, 3, 5])
  batch = peer_inputs.draw_batch(
      np.random.default_rng(0), pool, batch=64, max_len=5, num_items=7
  )
  assert batch['inputs'].shape == (64, 5) and batch['inputs'].dtype == np.int32
  assert set(batch['lengths']) <= {1, 3, 5} and len(set(batch['lengths'])) > 1
  for row, length in zip(batch['inputs'], batch['lengths']):
    assert np.all((row[:length] >= 1) & (row[:length] <= 7))
    assert np.all(row[length:] == peer_inputs.PAD)
  assert np.all((batch['targets'] >= 1) & (batch['targets'] <= 7))
  again = peer_inputs.draw_batch(
      np.random.default_rng(0), pool, batch=64, max_len=5, num_items=7
  )
  for name in batch:
    np.testing.assert_array_equal(batch[name], again[name])


def test_draw_batch_rejects_lengths_past_n():
  with pytest.raises(ValueError, match='1..4'):
    peer_inputs.draw_batch(
        np.random.default_rng(0), np.array([5]), batch=2, max_len=4, num_items=3
    )


def test_inputs_round_trip(tmp_path):
  arrays = {
      'inputs': np.arange(6, dtype=np.int32).reshape(2, 3),
      'lengths': np.array([1, 3], np.int32),
  }
  peer_inputs.save(tmp_path / 'b.npz', arrays)
  loaded = peer_inputs.load(tmp_path / 'b.npz')
  assert loaded.keys() == arrays.keys()
  np.testing.assert_array_equal(loaded['inputs'], arrays['inputs'])


def test_parse_cell():
  assert benchmark_peers.parse_cell('200x256') == (200, 256)
  assert benchmark_peers.parse_cell(' 1000 x 32 ') == (1000, 32)
  for bad in ('200', '200x', '0x8', 'ax8', '200x8x2'):
    with pytest.raises(ValueError, match='--cells'):
      benchmark_peers.parse_cell(bad)


def test_run_order_puts_each_comparison_back_to_back():
  cells = [(200, 256), (1000, 32)]
  order = benchmark_peers.run_order(cells, list(benchmark_peers.IMPLS))
  assert order == [
      ('recbole_linrec', 200, 256),
      ('jax_linrec', 200, 256),
      ('jax_linrec_causal', 200, 256),
      ('recbole_linrec', 1000, 32),
      ('jax_linrec', 1000, 32),
      ('jax_linrec_causal', 1000, 32),
      ('recbole_softmax', 200, 256),
      ('jax_softmax', 200, 256),
      ('recbole_softmax', 1000, 32),
      ('jax_softmax', 1000, 32),
  ]
  assert benchmark_peers.run_order(cells, ['jax_softmax']) == [
      ('jax_softmax', 200, 256),
      ('jax_softmax', 1000, 32),
  ]


def _record(impl, n, batch, seconds=None, rss=None, status='ok', **extra):
  return dict(
      impl=impl,
      n=n,
      batch=batch,
      status=status,
      seconds=seconds,
      peak_rss_gib=rss,
      **extra,
  )


def test_predicted_peak_scales_the_largest_smaller_batch():
  measured = [
      _record('jax_softmax', 200, 64, 1.0, 1.5, idle_gib=0.5),
      _record('jax_softmax', 200, 256, 1.0, 4.5, idle_gib=0.5),
      _record('jax_softmax', 1000, 8, 1.0, 9.0, idle_gib=0.5),
      _record('jax_linrec', 200, 256, 1.0, 2.0, idle_gib=0.5),
  ]
  # 0.5 + (4.5 - 0.5) * 2048 / 256 = 32.5
  assert benchmark_peers.predicted_peak_gib(
      measured, 'jax_softmax', 200, 2048
  ) == pytest.approx(32.5)
  assert (
      benchmark_peers.predicted_peak_gib(measured, 'jax_softmax', 200, 32)
      is None
  )
  assert (
      benchmark_peers.predicted_peak_gib(measured, 'recbole_softmax', 200, 2048)
      is None
  )


def test_a_rerun_replaces_only_the_cell_it_measured():
  old = [
      _record('jax_linrec', 200, 256, 1.0, 2.0),
      _record('jax_linrec', 200, 2048, 8.0, 9.0),
      _record('recbole_linrec', 200, 256, 3.0, 2.0),
  ]
  new = _record('jax_linrec', 200, 256, 0.5, 1.9)
  results = benchmark_peers._replace(old, new)  # pylint: disable=protected-access
  assert len(results) == 3 and new in results
  assert old[1] in results and old[2] in results and old[0] not in results


def test_ratios_and_table_by_hand():
  records = [
      _record('recbole_linrec', 200, 256, 2.0, 3.0, padding_share=0.25),
      _record('recbole_softmax', 200, 256, 6.0, 4.0, padding_share=0.25),
      _record(
          'jax_linrec',
          200,
          256,
          0.5,
          1.5,
          padding_share=0.25,
          gflops_per_s=40.0,
          share_of_matmul_peak=0.2,
      ),
      _record('jax_softmax', 200, 256, 3.0, 5.0, padding_share=0.25),
      _record('jax_linrec_causal', 200, 256, 0.7, 1.8, padding_share=0.25),
      _record('recbole_softmax', 200, 2048, status=peer_report.DOES_NOT_FIT),
      _record('jax_linrec', 200, 2048, 4.0, 9.0),
  ]
  found = {
      (q['n'], q['batch'], q['pair']): q for q in peer_report.ratios(records)
  }
  assert found.keys() == {(200, 256, 'linrec'), (200, 256, 'softmax')}
  assert found[200, 256, 'linrec']['speedup'] == pytest.approx(4.0)
  assert found[200, 256, 'linrec']['memory_ratio'] == pytest.approx(0.5)
  assert found[200, 256, 'softmax']['speedup'] == pytest.approx(2.0)
  assert found[200, 256, 'softmax']['memory_ratio'] == pytest.approx(1.25)
  (causal,) = peer_report.causal_costs(records)
  assert (causal['n'], causal['batch']) == (200, 256)
  assert causal['time_ratio'] == pytest.approx(1.4)
  assert causal['memory_ratio'] == pytest.approx(1.2)
  table = peer_report.markdown_table(records).splitlines()
  assert len(table) == 4  # Head, rule, two cells.
  assert table[2].startswith('| 200, 256 | 25 % | 2 s, 3.00 GiB |')
  assert '| 0.7 s, 1.80 GiB |' in table[2]
  assert '| 4.00x, 0.50x | 2.00x, 1.25x | 1.40x, 1.20x | 40 (20 %) |' in table[2]
  assert 'does not fit' in table[3] and '4 s, 9.00 GiB' in table[3]
  records[0]['cpu_seconds'] = 3.5
  cpu = peer_report.cpu_table(records).splitlines()
  assert cpu[2].startswith('| 200, 256 | 3.5 s |')
  assert 'does not fit' in cpu[3]


def test_plot_draws_a_png(tmp_path):
  pytest.importorskip('matplotlib')
  records = [
      _record('recbole_linrec', 200, 8, 2.0, 3.0),
      _record('jax_linrec', 200, 8, 0.5, 1.5),
      _record('jax_softmax', 200, 8, status=peer_report.DOES_NOT_FIT),
  ]
  peer_report.plot(records, tmp_path / 'p.png', title='t')
  assert (tmp_path / 'p.png').stat().st_size > 1000


def _run_in_peers_venv(code, tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  done = subprocess.run(
      [str(PEERS_PYTHON), '-c', textwrap.dedent(code)],
      cwd=tmp_path,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]


def _elu(x):
  return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _numpy_linrec(q, k, v):
  """The quadratic form of LINREC_NOTES §1: cosines of ELU features."""
  q_hat = _elu(q) / np.linalg.norm(_elu(q), axis=-1, keepdims=True)
  k_hat = _elu(k) / np.linalg.norm(_elu(k), axis=-1, keepdims=True)
  return q_hat @ np.swapaxes(k_hat, -1, -2) @ v / math.sqrt(q.shape[-1])


@needs_peers_venv
def test_torch_linrec_matches_numpy(tmp_path):
  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(2, 3, 7, 4)).astype(np.float32) for _ in range(3))
  np.savez(tmp_path / 'qkv.npz', q=q, k=k, v=v)
  _run_in_peers_venv(
      """
      import numpy as np, torch
      from experiments import torch_linrec
      qkv = np.load('qkv.npz')
      out = torch_linrec.linrec_attention(
          *(torch.from_numpy(qkv[name]) for name in 'qkv'))
      np.save('out.npy', out.numpy())
  """,
      tmp_path,
  )
  np.testing.assert_allclose(
      np.load(tmp_path / 'out.npy'),
      _numpy_linrec(q, k, v),
      rtol=1e-5,
      atol=1e-6,
  )


@needs_peers_venv
def test_swapped_recbole_sublayer_is_the_formula(tmp_path):
  """The whole attention sublayer of a RecBole SASRec after the swap."""
  x = np.random.default_rng(1).normal(size=(2, 6, 8)).astype(np.float32)
  np.save(tmp_path / 'x.npy', x)
  _run_in_peers_venv(
      """
      import json, numpy as np, torch
      from recbole.model.sequential_recommender.sasrec import SASRec
      from experiments import recbole_cell, torch_linrec
      model_size = dict(num_items=5, hidden=8, heads=2, layers=2, ffn=16,
                        dropout=0.2)
      torch.manual_seed(0)
      model = SASRec(recbole_cell.recbole_config(model_size, 6),
                     recbole_cell._Catalogue(5))
      swapped = torch_linrec.swap_in_linrec(model)
      model.eval()
      layer = model.trm_encoder.layer[0].multi_head_attention
      x = torch.from_numpy(np.load('x.npy'))
      mask = torch.randn(2, 1, 6, 6)  # Ignored: the output must not change.
      with torch.no_grad():
        out = layer(x, mask).numpy()
        again = layer(x, torch.zeros(2, 1, 6, 6)).numpy()
      weights = {name: p.detach().numpy() for name, p in
                 layer.named_parameters()}
      np.savez('result.npz', out=out, again=again, **weights)
      json.dump({'swapped': swapped,
                 'types': [type(l.multi_head_attention).__name__
                           for l in model.trm_encoder.layer]},
                open('meta.json', 'w'))
  """,
      tmp_path,
  )
  meta = json.loads((tmp_path / 'meta.json').read_text())
  assert meta == {'swapped': 2, 'types': ['LinRecSelfAttention'] * 2}
  r = np.load(tmp_path / 'result.npz')
  np.testing.assert_array_equal(r['out'], r['again'])

  def dense(h, name):
    return h @ r[f'{name}.weight'].T + r[f'{name}.bias']

  def heads(h):  # [B, N, D] -> [B, H, N, D / H]
    return h.reshape(2, 6, 2, 4).transpose(0, 2, 1, 3)

  context = _numpy_linrec(
      *(heads(dense(x, p)) for p in ('query', 'key', 'value'))
  )
  hidden = dense(context.transpose(0, 2, 1, 3).reshape(2, 6, 8), 'dense') + x
  mean = hidden.mean(-1, keepdims=True)
  var = hidden.var(-1, keepdims=True)
  want = (hidden - mean) / np.sqrt(var + 1e-12) * r['LayerNorm.weight'] + r[
      'LayerNorm.bias'
  ]
  np.testing.assert_allclose(r['out'], want, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_jax_cells_end_to_end(tmp_path):
  """linrec_jax cells only: runs without the peers' venv (no torch)."""
  data = REPO_ROOT.parent / 'shared' / 'data' / 'ml-1m'
  root = os.environ.get('LINREC_DATA_DIR', str(data.parent))
  if not (pathlib.Path(root) / 'ml-1m').is_dir():
    pytest.skip(f'no ML-1M under {root}')
  output = tmp_path / 'peers.json'
  subprocess.run(
      [
          sys.executable,
          '-m',
          'experiments.benchmark_peers',
          '--cells=8x2',
          '--impls=jax_linrec,jax_softmax',
          '--repeats=2',
          '--warmup=1',
          '--matmul_size=128',
          f'--data_root={root}',
          f'--prepared_root={tmp_path / "prepared"}',
          f'--output={output}',
      ],
      cwd=REPO_ROOT,
      check=True,
      capture_output=True,
      timeout=600,
  )
  report = json.loads(output.read_text())
  assert {
      'cpu_model',
      'cpu_count',
      'load_avg_at_start',
      'load_avg_at_end',
  } <= report['machine'].keys()
  assert report['idle']['jax']['status'] == 'ok'
  assert 'torch' not in report['idle']
  assert report['matmul_peak_gflops'] > 0
  assert [(r['impl'], r['status']) for r in report['results']] == [
      ('jax_linrec', 'ok'),
      ('jax_softmax', 'ok'),
  ]
  for r in report['results']:
    assert r['seconds'] > 0 and r['peak_rss_gib'] > r['idle_gib'] > 0
    assert r['xla_flops'] > 0 and 0 < r['share_of_matmul_peak']
    assert 1 <= len(r['times_s']) <= 2 and len(r['warmup_s']) == 1
    assert r['cpu_seconds'] > 0
  assert output.with_suffix('.png').stat().st_size > 0


def test_unknown_impl_names_the_flag(tmp_path):
  run = subprocess.run(
      [
          sys.executable,
          '-m',
          'experiments.benchmark_peers',
          '--impls=jax_linrec,nope',
          f'--output={tmp_path / "p.json"}',
      ],
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert run.returncode != 0
  assert "--impls: unknown ['nope']" in run.stderr
  assert not (tmp_path / 'p.json').exists()
