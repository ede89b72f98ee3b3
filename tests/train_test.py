"""Tests of `linrec_jax.training.train` and of the evaluator it drives.

The evaluator is checked without a model (a launcher that records what it
is given); `train_and_evaluate` runs a few steps on the 200-user sample.
"""

import json
import pathlib
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from data_prep import prepare
from linrec_jax import data
from linrec_jax import models
from linrec_jax.constants import PAD_ID
from linrec_jax.training import evaluation
from linrec_jax.training import memory_budget
from linrec_jax.training import optimizer
from linrec_jax.training import run_binding
from linrec_jax.training import train
from linrec_jax.training.config import TrainConfig

SAMPLE_FILE = "ml-1m-sample/ml-1m.txt"
NUM_ITEMS = 150


def _sequences(lengths, num_items=NUM_ITEMS, seed=0) -> data.Sequences:
  """Users with distinct random items, `lengths[r]` of them for row r."""
  rng = np.random.default_rng(seed)
  rows = [
      rng.choice(np.arange(1, num_items + 1), n, replace=False) for n in lengths
  ]
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  return data.Sequences(
      np.concatenate(rows).astype(np.int32), offsets, num_items
  )


class _RecordingLauncher:
  """Stands in for a launcher: keeps each batch, sums per-row values."""

  def __init__(self):
    self.batches = []
    self.params_seen = []

  def put_batch(self, batch):
    return dict(batch)

  def eval_step(self, params, batch):
    self.params_seen.append(params)
    self.batches.append(batch)
    valid = batch["valid"]
    return {
        "count": np.float32(valid.sum()),
        "user": np.float32(np.sum(batch["users"] * valid)),
        "target": np.float32(np.sum(batch["targets"] * valid)),
    }


def _evaluate(seqs, stage, protocol, batch_size, seed=7):
  launcher = _RecordingLauncher()
  evaluator = evaluation.Evaluator(
      launcher,
      seqs,
      stage=stage,
      protocol=protocol,
      max_len=8,
      batch_size=batch_size,
      pad_side="right",
      mask_token=None,
      seed=seed,
  )
  params = object()
  means = evaluator(params)
  assert all(p is params for p in launcher.params_seen)
  return means, launcher.batches


def _valid_rows(batches, name):
  return np.concatenate([b[name][b["valid"]] for b in batches])


@pytest.mark.parametrize("protocol", ["full", "uni100", "pop100"])
@pytest.mark.parametrize("stage, held_out", [("valid", 2), ("test", 1)])
@pytest.mark.parametrize("batch_size", [3, 7])  # a padded last batch, none
def test_evaluator_counts_every_user_once(
    protocol, stage, held_out, batch_size
):
  lengths = [5, 3, 9, 4, 12, 6, 3]
  seqs = _sequences(lengths)
  means, batches = _evaluate(seqs, stage, protocol, batch_size)
  num_users = len(lengths)
  assert len(batches) == -(-num_users // batch_size)
  assert all(len(b["valid"]) == batch_size for b in batches)
  users = _valid_rows(batches, "users")
  np.testing.assert_array_equal(users, np.arange(1, num_users + 1))
  # Padding rows are invalid and carry padding ids.
  for batch in batches:
    assert (batch["users"][~batch["valid"]] == 0).all()
    assert (batch["targets"][~batch["valid"]] == PAD_ID).all()
  # Each user's target: second-to-last item (valid) or last (test).
  ends = np.cumsum(lengths)
  targets = seqs.items[ends - held_out]
  np.testing.assert_array_equal(_valid_rows(batches, "targets"), targets)
  # Means are divided by the number of users, not of padded rows.
  assert means == {
      "user": pytest.approx(np.mean(np.arange(1, 8))),
      "target": pytest.approx(targets.mean()),
  }
  if protocol == "full":
    assert all("negatives" not in b for b in batches)


def _positive_popularity_items(seqs):
  return set(np.flatnonzero(evaluation.item_popularity(seqs)).tolist())


@pytest.mark.parametrize("protocol", ["uni100", "pop100"])
def test_sampled_negatives_exclude_the_target_and_depend_on_the_user(protocol):
  # Long histories, so that more than 100 items have training interactions.
  seqs = _sequences([60, 40, 80, 50, 45], seed=1)
  _, batches = _evaluate(seqs, "test", protocol, batch_size=3)
  negatives = _valid_rows(batches, "negatives")
  targets = _valid_rows(batches, "targets")
  assert negatives.shape == (5, evaluation.SAMPLED_NEGATIVES)
  assert ((negatives >= 1) & (negatives <= NUM_ITEMS)).all()
  assert (negatives != targets[:, None]).all()
  for row in negatives:
    assert len(set(row.tolist())) == evaluation.SAMPLED_NEGATIVES
  if protocol == "pop100":
    popular = _positive_popularity_items(seqs)
    assert len(popular) > evaluation.SAMPLED_NEGATIVES + 1
    assert set(negatives.ravel().tolist()) <= popular
  # The same user gets the same negatives whatever the batching.
  _, other_batches = _evaluate(seqs, "test", protocol, batch_size=7)
  np.testing.assert_array_equal(
      _valid_rows(other_batches, "negatives"), negatives
  )
  # ... and other ones under another seed.
  _, reseeded = _evaluate(seqs, "test", protocol, batch_size=3, seed=8)
  assert (_valid_rows(reseeded, "negatives") != negatives).any()


def test_item_popularity_counts_only_training_parts():
  # Rows: [1, 2, 3, 4] trains on 1, 2; [2, 5, 3] on 2; [4, 2, 1] on 4.
  seqs = data.Sequences(
      np.array([1, 2, 3, 4, 2, 5, 3, 4, 2, 1], np.int32),
      np.array([0, 4, 7, 10], np.int64),
      num_items=5,
  )
  np.testing.assert_allclose(
      evaluation.item_popularity(seqs), [0, 1 / 4, 2 / 4, 0, 1 / 4, 0]
  )


def test_popularity_baseline_by_hand():
  # Same rows; popularity 1: 1/4, 2: 2/4, 4: 1/4, 3 and 5: 0. Test targets
  # 4, 3, 1 rank 3, 5, 3 (ties against); valid targets 3, 5, 2 rank 5, 5, 1.
  seqs = data.Sequences(
      np.array([1, 2, 3, 4, 2, 5, 3, 4, 2, 1], np.int32),
      np.array([0, 4, 7, 10], np.int64),
      num_items=5,
  )
  test = evaluation.popularity_metrics(seqs, data.TEST, ks=(1, 5), batch_size=2)
  assert test["hit@1"] == 0.0 and test["hit@5"] == 1.0
  assert test["ndcg@5"] == pytest.approx((2 / np.log2(4) + 1 / np.log2(6)) / 3)
  assert test["mrr@5"] == pytest.approx((2 / 3 + 1 / 5) / 3)
  valid = evaluation.popularity_metrics(seqs, data.VALID, ks=(1,))
  assert valid["hit@1"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "model, causal_field", [("sasrec", True), ("bert4rec", False)]
)
def test_make_model_passes_the_config(model, causal_field):
  config = TrainConfig(
      model=model,
      hidden=16,
      heads=2,
      ffn=24,
      layers=1,
      max_len=12,
      causal=model == "sasrec",
      train_mode="cloze" if model == "bert4rec" else "all",
  )
  made = models.make_model(config, num_items=30)
  assert isinstance(made, models.MODELS[model])
  assert (
      made.num_items,
      made.config.max_len,
      made.config.hidden,
      made.config.heads,
      made.config.ffn,
      made.config.layers,
  ) == (30, 12, 16, 2, 24, 1)
  assert made.config.causal == causal_field


@pytest.fixture(scope="module")
def sample_dir(data_file, tmp_path_factory):
  raw = data_file(SAMPLE_FILE)
  output = tmp_path_factory.mktemp("prepared") / "ml-1m-sample"
  return str(prepare.prepare_if_needed("ml-1m", raw, output))


def _tiny(**fields) -> TrainConfig:
  values = dict(
      hidden=16,
      ffn=32,
      layers=1,
      heads=2,
      dropout=0.0,
      lr=1e-2,
      batch_size=16,
      eval_batch_size=64,
      max_len=20,
      epochs=1,
      max_steps=3,
      log_every_steps=1,
      checkpoint_every_steps=2,
  )
  values.update(fields)
  return TrainConfig(**values)


def _assert_metrics_in_range(metrics, both_protocols=True):
  """Full ranking gives both protocols (history kept, then excluded) and
  seen@10; the sampled protocols give the first set only."""
  metrics = dict(metrics)
  names = {f"{m}@{k}" for m in ("hit", "ndcg", "mrr") for k in train.KS}
  suffixes = ("", "_nohist") if both_protocols else ("",)
  if both_protocols:
    names |= {n + "_nohist" for n in names} | {"seen@10", "seen_input@10"}
    assert 0.0 <= metrics.pop("seen_input@10") <= metrics.pop("seen@10") <= 10
  seen = {"seen@10", "seen_input@10"} if both_protocols else set()
  assert set(metrics) | seen == names
  for name, value in metrics.items():
    assert 0.0 <= value <= 1.0, (name, value)
  for suffix in suffixes:
    for k in train.KS:
      assert (
          metrics[f"mrr@{k}{suffix}"]
          <= metrics[f"ndcg@{k}{suffix}"]
          <= metrics[f"hit@{k}{suffix}"]
      )
      if suffix:  # Taking seen items out can only lift each target.
        for m in ("hit", "ndcg", "mrr"):
          assert metrics[f"{m}@{k}{suffix}"] + 1e-6 >= metrics[f"{m}@{k}"]


@pytest.mark.parametrize(
    "protocol, described",
    [
        ("uni100", "100 uniform negatives"),
        # The same path with another sampler (negatives_test.py): slow.
        pytest.param(
            "pop100", "100 popularity negatives", marks=pytest.mark.slow
        ),
    ],
)
def test_sampled_protocols_run_end_to_end(
    sample_dir, tmp_path, protocol, described
):
  lines = []
  results = train.train_and_evaluate(
      _tiny(eval_protocol=protocol),
      sample_dir,
      str(tmp_path),
      report=lines.append,
  )
  assert json.loads((tmp_path / "results.json").read_text()) == results
  for stage in ("valid", "test"):
    _assert_metrics_in_range(results[stage], both_protocols=False)
  assert described in results["eval_protocol"]
  assert results["steps"] == 3
  assert results["config"]["eval_protocol"] == protocol
  steps = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
  assert steps == ["2", "3"]
  assert any(line.startswith("test: hit@5") for line in lines)
  assert "devices: 1 x cpu (1 process), launcher mesh" in lines


def test_batch_larger_than_an_epoch_names_the_flag(sample_dir, tmp_path):
  with pytest.raises(ValueError, match="--batch_size=4096"):
    train.train_and_evaluate(
        _tiny(batch_size=4096), sample_dir, str(tmp_path / "work")
    )


def test_time_limit_ends_training_at_an_epoch_end(sample_dir, tmp_path):
  config = _tiny(max_steps=0, epochs=3, time_limit_minutes=1e-9)
  results = train.train_and_evaluate(
      config, sample_dir, str(tmp_path), report=lambda line: None
  )
  assert results["epochs_run"] == 1
  assert results["steps"] == results["steps_per_epoch"]
  assert results["stop_reason"].startswith("time limit")
  _assert_metrics_in_range(results["test"])


@pytest.mark.parametrize("model", ["sasrec", "bert4rec"])
def test_length_buckets_train_end_to_end(model, sample_dir, tmp_path):
  cloze = dict(model="bert4rec", causal=False, train_mode="cloze")
  results = train.train_and_evaluate(
      _tiny(
          length_bucket=5,
          loss_normalizer="epoch",
          max_steps=4,
          attention="softmax",
          attention_dropout=0.1,
          dropout=0.1,
          **(cloze if model == "bert4rec" else {}),
      ),
      sample_dir,
      str(tmp_path),
      report=lambda line: None,
  )
  assert results["steps"] == 4
  assert results["config"]["length_bucket"] == 5
  assert results["config"]["model"] == model
  for stage in ("valid", "test"):
    _assert_metrics_in_range(results[stage])


# steps_test.py checks the accumulated update against the whole batch's
# (dropout on) and sharding_test.py on 4 devices; this is the whole run.
@pytest.mark.slow
def test_microbatches_reach_the_same_metrics(sample_dir, tmp_path):
  quiet = lambda line: None
  whole = train.train_and_evaluate(
      _tiny(), sample_dir, str(tmp_path / "a"), report=quiet
  )
  chunked = train.train_and_evaluate(
      _tiny(microbatches=4), sample_dir, str(tmp_path / "b"), report=quiet
  )
  for stage in ("valid", "test"):
    for name, value in whole[stage].items():
      assert chunked[stage][name] == pytest.approx(value, abs=1e-3), name


def _snapshot(directory) -> dict:
  """Every file under `directory` with its bytes and modification time."""
  root = pathlib.Path(directory)
  return {
      str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
      for p in sorted(root.rglob("*"))
      if p.is_file()
  }


@pytest.fixture(scope="module")
def trained_workdir(sample_dir, tmp_path_factory):
  """A finished tiny run (3 steps, constant lr): (workdir, its results)."""
  workdir = tmp_path_factory.mktemp("trained")
  results = train.train_and_evaluate(
      _tiny(), sample_dir, str(workdir), report=lambda line: None
  )
  return workdir, results


def test_stop_reason_names_max_steps(trained_workdir):
  _, results = trained_workdir
  assert results["stop_reason"] == "max_steps"


@pytest.mark.parametrize(
    "changed, named",
    [
        (dict(attention="softmax"), ["--attention: 'linrec' there, 'softmax'"]),
        (
            dict(lr=0.5, seed=7),
            ["--lr: 0.01 there, 0.5 here", "--seed: 2000 there, 7 here"],
        ),
        (
            dict(dropout=0.3, hidden=32),
            ["--dropout: 0.0 there, 0.3 here", "--hidden: 16 there, 32 here"],
        ),
        (dict(eval_every_epochs=2), ["--eval_every_epochs: 1 there, 2 here"]),
    ],
)
def test_rerun_with_another_configuration_stops_and_touches_nothing(
    trained_workdir, sample_dir, tmp_path, changed, named
):
  workdir = tmp_path / "copy"
  shutil.copytree(trained_workdir[0], workdir)
  before = _snapshot(workdir)
  with pytest.raises(run_binding.WorkdirMismatchError) as error:
    train.train_and_evaluate(
        _tiny(**changed), sample_dir, str(workdir), report=lambda line: None
    )
  message = str(error.value)
  assert "\n" not in message
  for text in named:
    assert text in message, message
  assert message.count(" there, ") == len(named)
  assert _snapshot(workdir) == before


def test_cosine_schedule_cannot_be_extended(sample_dir, tmp_path):
  workdir = str(tmp_path / "work")
  train.train_and_evaluate(
      _tiny(lr_schedule="cosine"), sample_dir, workdir, report=lambda line: None
  )
  before = _snapshot(workdir)
  with pytest.raises(
      run_binding.WorkdirMismatchError,
      match=r"--max_steps: 3 there, 5 here \(the cosine "
      r"learning-rate schedule spans the run's 3 steps",
  ):
    train.train_and_evaluate(
        _tiny(lr_schedule="cosine", max_steps=5),
        sample_dir,
        workdir,
        report=lambda line: None,
    )
  assert _snapshot(workdir) == before


def _checkpoint_steps(workdir) -> list[int]:
  return sorted(
      int(p.name)
      for p in (pathlib.Path(workdir) / "checkpoints").iterdir()
      if p.name.isdigit()
  )


def test_extending_a_constant_run_continues_it_honestly(
    trained_workdir, sample_dir, tmp_path
):
  workdir = tmp_path / "extended"
  shutil.copytree(trained_workdir[0], workdir)
  lines = []
  extended = train.train_and_evaluate(
      _tiny(max_steps=6, patience=5, eval_batch_size=32),
      sample_dir,
      str(workdir),
      report=lines.append,
  )
  straight = train.train_and_evaluate(
      _tiny(max_steps=6, patience=5),
      sample_dir,
      str(tmp_path / "straight"),
      report=lambda line: None,
  )
  assert "resumed from step 3" in " ".join(lines)
  assert extended["steps"] == 6 and extended["config"]["max_steps"] == 6
  # Steps 4..6 retrace the uninterrupted run: the same parameters at step 6.
  history = [
      json.loads(line)
      for line in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  assert [r["step"] for r in history] == [3, 6]
  assert history[-1]["valid"] == pytest.approx(
      json.loads(
          (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()[-1]
      )["valid"],
      abs=1e-6,
  )
  # Both records are of epoch 1: one epoch was run, not two.
  assert extended["epochs_run"] == straight["epochs_run"] == 1
  changes = [
      json.loads(line)
      for line in (workdir / "config_changes.jsonl").read_text().splitlines()
  ]
  assert changes == [
      {
          "time": changes[0]["time"],
          "step": 3,
          "changes": {
              "eval_batch_size": {"old": 64, "new": 32},
              "max_steps": {"old": 3, "new": 6},
              "patience": {"old": 10, "new": 5},
          },
      }
  ]
  config = json.loads((workdir / "config.json").read_text())["config"]
  assert config["max_steps"] == 6


def test_an_early_stopped_run_says_it_is_finished(sample_dir, tmp_path):
  # 3 steps per epoch; with lr 1e-9 no evaluation is better than the first,
  # so patience 1 stops the run after epoch 2 of 3.
  still = dict(max_steps=0, epochs=3, lr=1e-9, batch_size=64, patience=1)
  workdir = tmp_path / "work"
  first = train.train_and_evaluate(
      _tiny(**still), sample_dir, str(workdir), report=lambda line: None
  )
  assert first["stop_reason"].startswith("early stopping")
  assert (first["epochs_run"], first["steps"]) == (2, 6)
  results_before = (workdir / "results.json").read_text()
  lines = []
  again = train.train_and_evaluate(
      _tiny(**dict(still, epochs=6)),
      sample_dir,
      str(workdir),
      report=lines.append,
  )
  assert any(
      "the run is finished (early stopping" in line
      and "--epochs=6 does not reopen it" in line
      for line in lines
  ), lines
  assert (again["epochs_run"], again["steps"]) == (2, 6)
  assert again["config"]["epochs"] == 3
  assert again["test"] == first["test"]
  assert json.loads(results_before)["test"] == again["test"]
  assert not (workdir / "config_changes.jsonl").exists()
  # A higher patience does reopen it: epochs 3 and 4 are run, no better.
  reopened = train.train_and_evaluate(
      _tiny(**dict(still, epochs=6, patience=3)),
      sample_dir,
      str(workdir),
      report=lambda line: None,
  )
  assert (reopened["epochs_run"], reopened["steps"]) == (4, 12)
  history = [
      json.loads(line)
      for line in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  assert [r["epoch"] for r in history] == [1, 2, 3, 4]
  assert reopened["config"]["patience"] == 3
  [change] = [
      json.loads(line)
      for line in (workdir / "config_changes.jsonl").read_text().splitlines()
  ]
  assert change["step"] == 6
  assert change["changes"] == {
      "epochs": {"old": 3, "new": 6},
      "patience": {"old": 1, "new": 3},
  }


def test_other_prepared_data_is_refused(trained_workdir, sample_dir, tmp_path):
  workdir = tmp_path / "copy"
  shutil.copytree(trained_workdir[0], workdir)
  other = tmp_path / "other-data"
  shutil.copytree(sample_dir, other)
  meta = json.loads((other / "meta.json").read_text())
  meta["note"] = "prepared again with other options"
  (other / "meta.json").write_text(json.dumps(meta))
  before = _snapshot(workdir)
  with pytest.raises(
      run_binding.WorkdirMismatchError,
      match=f"was trained on other prepared data than {other}/meta.json",
  ):
    train.train_and_evaluate(
        _tiny(), str(other), str(workdir), report=lambda line: None
    )
  assert _snapshot(workdir) == before
  # The same data under another path is the same data.
  moved = tmp_path / "moved-data"
  shutil.copytree(sample_dir, moved)
  results = train.train_and_evaluate(
      _tiny(), str(moved), str(workdir), report=lambda line: None
  )
  assert results["test"] == trained_workdir[1]["test"]


def test_non_finite_step_stops_and_keeps_the_last_good_checkpoint(
    sample_dir, tmp_path, monkeypatch
):
  # The learning rate turns to NaN for the update of step 5 (count 4).
  schedule = optimizer.learning_rate_schedule

  def poisoned(*args, **kwargs):
    rate = schedule(*args, **kwargs)
    return lambda count: jnp.where(count == 4, jnp.nan, rate(count))

  monkeypatch.setattr(optimizer, "learning_rate_schedule", poisoned)
  workdir = tmp_path / "work"
  config = _tiny(
      max_steps=8,
      checkpoint_every_steps=2,
      log_every_steps=100,
      keep_checkpoints=5,
  )
  with pytest.raises(train.NonFiniteError) as error:
    train.train_and_evaluate(
        config, sample_dir, str(workdir), report=lambda line: None
    )
  message = str(error.value)
  assert message.startswith("step 5 (epoch 1, batch 5) gave a non-finite")
  assert "--lr=0.01 is probably too high" in message
  assert "checkpoint 4 (the last good one) is kept" in message
  assert _checkpoint_steps(workdir) == [2, 4]
  assert not (workdir / "results.json").exists()
  # Without the poison the run resumes from step 4 and ends as if nothing
  # had happened.
  monkeypatch.setattr(optimizer, "learning_rate_schedule", schedule)
  resumed = train.train_and_evaluate(
      config, sample_dir, str(workdir), report=lambda line: None
  )
  straight = train.train_and_evaluate(
      config, sample_dir, str(tmp_path / "straight"), report=lambda line: None
  )
  assert resumed["test"] == straight["test"]
  assert resumed["steps"] == 8


def test_absurd_sizes_fail_before_allocating(sample_dir, tmp_path):
  with pytest.raises(
      memory_budget.MemoryBudgetError,
      match=r"--hidden=1000000000, .* need [0-9.]+ GiB, more " r"than the",
  ):
    train.train_and_evaluate(
        _tiny(hidden=10**9), sample_dir, str(tmp_path / "work")
    )
  with pytest.raises(
      memory_budget.MemoryBudgetError,
      match="--batch_size=.* the scores of one training chunk",
  ):
    train.train_and_evaluate(
        _tiny(batch_size=192, max_len=2_000_000),
        sample_dir,
        str(tmp_path / "work"),
    )
  assert not (tmp_path / "work").exists()
