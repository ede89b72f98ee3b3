"""Smoke test of experiments.benchmark: one tiny cell, end to end."""

import importlib.util
import json
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_one_cell_end_to_end(tmp_path):
  output = tmp_path / 'bench.json'
  subprocess.run(
      [sys.executable, '-m', 'experiments.benchmark', '--variants=linrec',
       '--lengths=8', '--batches=2', '--modes=infer', '--repeats=2',
       f'--output={output}'],
      cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)
  report = json.loads(output.read_text())
  assert {'date', 'versions', 'cpu_count', 'load_avg_at_start',
          'load_avg_at_end'} <= report['machine'].keys()
  assert report['idle']['status'] == 'ok'
  assert report['idle']['peak_rss_gib'] > 0
  (record,) = report['results']
  assert record['status'] == 'ok', record
  assert {'variant': 'linrec', 'n': 8, 'batch': 2, 'mode': 'infer'}.items() \
      <= record.items()
  assert record['seconds'] > 0 and record['peak_rss_gib'] > 0
  assert 1 <= len(record['times_s']) <= 2
  assert len(record['load_avg_start']) == len(record['load_avg_end']) == 3
  assert report['machine']['accelerators'] == [] or all(
      report['machine']['accelerators'])
  if importlib.util.find_spec('matplotlib') is None:  # Plots are optional.
    return
  for suffix in ('_time.png', '_memory.png'):
    assert output.with_name(output.stem + suffix).stat().st_size > 0
