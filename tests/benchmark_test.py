"""Smoke test of experiments.benchmark: one tiny cell, end to end."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


# A benchmark cell in its own process, compiled at benchmark size: slow.
@pytest.mark.slow
def test_one_cell_end_to_end(tmp_path):
  output = tmp_path / 'bench.json'
  subprocess.run(
      [
          sys.executable,
          '-m',
          'experiments.benchmark',
          '--variants=linrec',
          '--lengths=8',
          '--batches=2',
          '--modes=infer',
          '--repeats=2',
          '--matmul_size=128',
          f'--output={output}',
      ],
      cwd=REPO_ROOT,
      check=True,
      capture_output=True,
      timeout=120,
  )
  report = json.loads(output.read_text())
  assert {
      'date',
      'versions',
      'cpu_count',
      'load_avg_at_start',
      'load_avg_at_end',
  } <= report['machine'].keys()
  assert report['idle']['status'] == 'ok'
  assert report['idle']['peak_rss_gib'] > 0
  (record,) = report['results']
  assert record['status'] == 'ok', record
  assert {
      'variant': 'linrec',
      'n': 8,
      'batch': 2,
      'mode': 'infer',
  }.items() <= record.items()
  assert record['seconds'] > 0 and record['peak_rss_gib'] > 0
  assert 1 <= len(record['times_s']) <= 2
  # The peak is measured twice, at the start and at the end of the run.
  assert [p['size'] for p in report['matmul_peak']] == [128, 128]
  assert report['matmul_peak_gflops'] == max(
      p['gflops'] for p in report['matmul_peak']
  )
  assert record['xla_flops'] > 0
  assert record['gflops_per_s'] == pytest.approx(
      record['xla_flops'] / record['seconds'] / 1e9
  )
  assert record['share_of_matmul_peak'] == pytest.approx(
      record['gflops_per_s'] / report['matmul_peak_gflops']
  )
  assert len(record['load_avg_start']) == len(record['load_avg_end']) == 3
  assert report['machine']['accelerators'] == [] or all(
      report['machine']['accelerators']
  )
  if importlib.util.find_spec('matplotlib') is None:  # Plots are optional.
    return
  for suffix in ('_time.png', '_memory.png'):
    assert output.with_name(output.stem + suffix).stat().st_size > 0


def test_unknown_variant_names_the_flag(tmp_path):
  run = subprocess.run(
      [
          sys.executable,
          '-m',
          'experiments.benchmark',
          '--variants=linrec,nope',
          f'--output={tmp_path / "bench.json"}',
      ],
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert run.returncode != 0
  assert "--variants: unknown ['nope']" in run.stderr
  assert not (tmp_path / 'bench.json').exists()


# The two layouts agree by models_test.py (BERT4Rec's states and gradients
# at the scored positions equal its whole output there); this runs the
# benchmark script itself: slow.
@pytest.mark.slow
def test_cloze_benchmark_scores_the_same_loss_both_ways(tmp_path):
  output = tmp_path / 'cloze.json'
  subprocess.run(
      [
          sys.executable,
          '-m',
          'experiments.benchmark_cloze',
          '--attentions=linrec',
          '--num_items=30',
          '--max_len=10',
          '--batch_size=4',
          '--hidden=8',
          '--heads=2',
          '--ffn=16',
          '--layers=1',
          '--repeats=2',
          f'--output={output}',
      ],
      cwd=REPO_ROOT,
      check=True,
      capture_output=True,
      timeout=300,
  )
  report = json.loads(output.read_text())
  assert report['machine']['cpu_count'] > 0
  timed = {r['layout']: r for r in report['records'] if 'layout' in r}
  assert timed['all']['scored_positions'] == 10
  assert timed['masked']['scored_positions'] == 2  # int(0.2 * 10)
  assert all(
      len(r['times_s']) == 2 and r['seconds'] > 0 for r in timed.values()
  )
  (summary,) = [r for r in report['records'] if 'speedup' in r]
  # The same masked targets, scored two ways: the same mean loss.
  assert summary['loss_difference'] < 1e-5
  assert abs(timed['all']['loss'] - timed['masked']['loss']) < 1e-5


@pytest.mark.parametrize(
    'module, argv, named',
    [
        ('benchmark', ['--lengths=8,abc'], "--lengths: 'abc' is not a whole"),
        (
            'benchmark_attention',
            ['--memory_fraction=nan'],
            '--memory_fraction:',
        ),
        (
            'benchmark_cloze',
            ['--hidden=1000000000'],
            '--num_items, --hidden, --ffn, --layers, --max_len: the parameters',
        ),
        ('benchmark_devices', ['--batch_size=0'], '--batch_size: must be'),
        (
            'benchmark_streaming',
            ['--batch=10', '--users_per_chunk=3'],
            '--batch=10 is not a multiple of --users_per_chunk=3',
        ),
    ],
)
def test_bad_flag_of_each_benchmark_is_one_line(tmp_path, module, argv, named):
  output = tmp_path / 'out'
  target = '--out' if module == 'benchmark_streaming' else '--output'
  run = subprocess.run(
      [
          sys.executable,
          '-m',
          f'experiments.{module}',
          *argv,
          f'{target}={output}',
      ],
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert run.returncode == 1, run.stderr
  [line] = run.stderr.splitlines()
  assert line.startswith('error: ') and named in line, line
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('attention', ['softmax', 'linrec'])
def test_epoch_benchmark_counts_flops_at_real_positions_only(attention):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from linrec_jax.cli import bench_common  # pylint: disable=g-import-not-at-top
  from linrec_jax.training.config import TrainConfig  # pylint: disable=g-import-not-at-top

  config = TrainConfig(
      max_len=3, hidden=4, ffn=8, heads=2, layers=1, attention=attention
  )
  # Rows of 2 and 1 real items, 2 real targets; 9 items -> 10 columns.
  batch = {
      'inputs': np.array([[5, 6, 0], [7, 0, 0]]),
      'targets': np.array([[6, 0, 0], [8, 0, 0]]),
  }
  # Per position: 8 * 4^2 (Q, K, V, out) + 4 * 4 * 8 (FFN) = 256; 3 real.
  # Softmax: 4 D t at positions t = 1, 2 of row 1 and 1 of row 2 = 16 * 4.
  # Linrec: 4 D d_h (k v^T and q S, 2 D d_h each) = 4 * 4 * 2 = 32 a position.
  attention_flops = {'softmax': 16 * 4, 'linrec': 32 * 3}[attention]
  scores = 2 * 4 * 10 * 2
  expected = 3 * (256 * 3 + attention_flops + scores)
  assert bench_common.useful_train_flops(batch, config, 9) == expected
