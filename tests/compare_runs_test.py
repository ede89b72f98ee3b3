"""Tests for linrec_jax.analysis.run_comparison and experiments.compare_runs."""

import json
import pathlib
import subprocess
import sys

import pytest

from linrec_jax.analysis import run_comparison

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def _workdir(root, name, curve, results=None):
  """A workdir whose metrics.jsonl holds `curve`: [(epoch, step, ndcg)]."""
  workdir = root / name
  workdir.mkdir()
  lines = [
      json.dumps(
          {
              'epoch': epoch,
              'step': step,
              'train_loss': 5.0,
              'valid': {'ndcg@10': value, 'hit@10': 2 * value},
          }
      )
      for epoch, step, value in curve
  ]
  (workdir / 'metrics.jsonl').write_text('\n'.join(lines) + '\n')
  if results is not None:
    (workdir / 'results.json').write_text(json.dumps(results))
  return str(workdir)


@pytest.fixture
def two_runs(tmp_path):
  base = _workdir(
      tmp_path, 'base', [(1, 10, 0.05), (2, 20, 0.10), (3, 30, 0.08)]
  )
  other = _workdir(
      tmp_path,
      'other',
      [(1, 10, 0.06), (2, 20, 0.09)],
      results={
          'stop_reason': 'epochs',
          'test': {'hit@10': 0.25, 'ndcg@10': 0.125, 'mrr@10': 0.1},
      },
  )
  return base, other


def test_reads_curve_and_results(two_runs):
  base = run_comparison.read_run(two_runs[0], 'ndcg@10')
  other = run_comparison.read_run(two_runs[1], 'hit@10', name='label')
  assert base.name == 'base' and base.results is None and base.epochs == 3
  assert base.curve == {1: (10, 0.05), 2: (20, 0.10), 3: (30, 0.08)}
  assert other.name == 'label' and other.curve == {1: (10, 0.12), 2: (20, 0.18)}
  assert other.results['test']['ndcg@10'] == 0.125


def test_epochs_without_validation_count_as_run(tmp_path):
  workdir = _workdir(tmp_path, 'run', [(1, 10, 0.05)])
  with open(pathlib.Path(workdir) / 'metrics.jsonl', 'a') as f:
    f.write(json.dumps({'epoch': 2, 'step': 20, 'train_loss': 4.0}) + '\n')
  run = run_comparison.read_run(workdir, 'ndcg@10')
  assert run.epochs == 2 and run.curve == {1: (10, 0.05)}


def test_first_reached_takes_the_first_epoch_at_or_above():
  curve = {1: (10, 0.05), 2: (20, 0.10), 3: (30, 0.12), 4: (40, 0.11)}
  assert run_comparison.first_reached(curve, 0.10) == (20, 2)
  assert run_comparison.first_reached(curve, 0.11) == (30, 3)
  assert run_comparison.first_reached(curve, 0.13) is None


def test_tables_by_hand(two_runs):
  runs = [run_comparison.read_run(w, 'ndcg@10') for w in two_runs]
  text = run_comparison.report(runs, 'ndcg@10', every=2, thresholds=[0.06, 0.1])
  # Rows 1 and 3 (every 2), plus the other run's last epoch, 2.
  assert '| 1 | 0.0500 | 0.0600 | +20.0 % |' in text
  assert '| 2 | 0.1000 | 0.0900 | -10.0 % |' in text
  assert '| 3 | 0.0800 |  |  |' in text
  assert '| base | 20 (2) | 20 (2) |' in text
  assert '| other | 10 (1) | not yet |' in text
  assert '| base | 0.1000 (2) | 3 | running |  |  |  |' in text
  assert (
      '| other | 0.0900 (2) | 2 | epochs | 0.2500 | 0.1250 | 0.1000 |' in text
  )


def test_minutes_to_quality_add_training_and_validation_seconds(tmp_path):
  workdir = _workdir(tmp_path, 'timed', [])
  records = [
      dict(
          epoch=1,
          step=10,
          seconds=90.0,
          valid_seconds=30.0,
          valid={'ndcg@10': 0.05},
      ),
      dict(epoch=2, step=20, seconds=60.0),  # Not validated.
      dict(
          epoch=3,
          step=30,
          seconds=60.0,
          valid_seconds=30.0,
          valid={'ndcg@10': 0.12},
      ),
  ]
  (pathlib.Path(workdir) / 'metrics.jsonl').write_text(
      ''.join(json.dumps(r) + '\n' for r in records)
  )
  run = run_comparison.read_run(workdir, 'ndcg@10')
  # 120 s, then 180 s, then 270 s.
  assert run.minutes == {1: 2.0, 2: 3.0, 3: 4.5}
  text = run_comparison.threshold_table([run], 'ndcg@10', [0.05, 0.1, 0.2])
  assert '| timed | 10 (1, 2 min) | 30 (3, 4 min) | not yet |' in text
  (pathlib.Path(workdir) / 'metrics.jsonl').write_text(
      json.dumps(dict(records[0], seconds='90')) + '\n'
  )
  with pytest.raises(ValueError, match=r':1: field "seconds" is not a number'):
    run_comparison.read_run(workdir, 'ndcg@10')


def test_missing_metrics_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match='metrics.jsonl'):
    run_comparison.read_run(str(tmp_path), 'ndcg@10')


def test_bad_line_names_file_line_and_field(tmp_path):
  workdir = _workdir(tmp_path, 'run', [(1, 10, 0.05)])
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  good = path.read_text()
  path.write_text(good + '{"epoch": 2\n')
  with pytest.raises(ValueError, match=r'metrics.jsonl:2: not JSON'):
    run_comparison.read_run(workdir, 'ndcg@10')
  path.write_text(good + '{"epoch": 2, "valid": {}}\n')
  with pytest.raises(ValueError, match=r'metrics.jsonl:2: field "step"'):
    run_comparison.read_run(workdir, 'ndcg@10')
  with pytest.raises(ValueError, match=r':1: field "valid.mrr@10" missing'):
    run_comparison.read_run(workdir, 'mrr@10')


def test_command_line_writes_output_and_checks_flags(two_runs, tmp_path):
  output = tmp_path / 'report.md'
  command = [
      sys.executable,
      '-m',
      'experiments.compare_runs',
      f'--workdirs={",".join(two_runs)}',
  ]
  subprocess.run(
      command + ['--names=a,b', f'--output={output}'],
      cwd=REPO_ROOT,
      check=True,
      capture_output=True,
      timeout=60,
  )
  assert '| b / a |' in output.read_text()
  for flag, message in [
      ('--names=a', '--names has 1 labels for 2'),
      ('--every=0', '--every must be positive'),
      ('--thresholds=x', '--thresholds must be numbers'),
  ]:
    run = subprocess.run(
        command + [flag],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and message in run.stderr, run.stderr
