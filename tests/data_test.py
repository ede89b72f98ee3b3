"""Tests of linrec_jax.data: loading, leave-one-out, train and eval batches.

Synthetic sequences give every interaction its own item id, numbered in
order (user 1 owns 1..n1, user 2 owns n1+1..., etc.), so an item id tells
the user and the position it came from, and "the next item" is id + 1.
"""

import json
import time
import tracemalloc

import numpy as np
import pytest

from data_prep import prepare
from linrec_jax import data
from linrec_jax.constants import PAD_ID

LENGTHS = (3, 4, 5, 7, 12, 25, 3, 9)


def _sequences(lengths=LENGTHS) -> data.Sequences:
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  items = np.arange(1, offsets[-1] + 1, dtype=np.int32)
  return data.Sequences(items, offsets, int(offsets[-1]), {})


def _train_items(seqs) -> set[int]:
  split = data.leave_one_out(seqs)
  return {
      int(i)
      for s, e in zip(split.train_start, split.train_end)
      for i in seqs.items[s:e]
  }


def _epoch(loader, epoch=0, **kwargs):
  return [loader.batch(epoch, i, **kwargs) for i in range(loader.num_batches)]


def _concat(batches, key):
  return np.concatenate([b[key] for b in batches])


# Loading --------------------------------------------------------------------


@pytest.fixture
def tiny_prepared(tmp_path):
  path = tmp_path / "s.txt"
  path.write_text("1 5\n1 6\n1 7\n1 8\n2 6\n2 5\n2 9\n")
  return prepare.prepare_dataset("tiny", path, tmp_path / "prepared")


def test_load(tiny_prepared):
  seqs = data.load(tiny_prepared)
  np.testing.assert_array_equal(seqs.items, [1, 2, 3, 4, 2, 1, 5])
  np.testing.assert_array_equal(seqs.offsets, [0, 4, 7])
  assert (seqs.num_users, seqs.num_items) == (2, 5)
  np.testing.assert_array_equal(seqs.lengths, [4, 3])
  assert seqs.meta["num_interactions"] == 7
  assert not seqs.items.flags.writeable
  split = data.leave_one_out(seqs)
  np.testing.assert_array_equal(split.valid_items, [3, 1])
  np.testing.assert_array_equal(split.test_items, [4, 5])
  np.testing.assert_array_equal(split.train_end - split.train_start, [2, 1])


def test_load_errors(tiny_prepared, tmp_path):
  with pytest.raises(FileNotFoundError, match="missing sequences.npz"):
    data.load(tmp_path)
  meta_path = tiny_prepared / data.META_FILE
  meta = json.loads(meta_path.read_text())
  meta_path.write_text(json.dumps({**meta, "format_version": 99}))
  with pytest.raises(ValueError, match="unknown format_version 99"):
    data.load(tiny_prepared)
  meta_path.write_text(json.dumps({**meta, "num_users": 3}))
  with pytest.raises(ValueError, match="disagree with meta.json"):
    data.load(tiny_prepared)
  (tiny_prepared / data.ITEM_IDS_FILE).unlink()
  with pytest.raises(FileNotFoundError, match="item_ids.txt"):
    data.load(tiny_prepared)


def test_prepare_if_needed(tmp_path, monkeypatch):
  raw = tmp_path / "s.txt"
  raw.write_text("1 5\n1 6\n1 7\n2 6\n2 5\n2 9\n")
  output = tmp_path / "prepared"
  assert prepare.prepare_if_needed("ml-1m", raw, output) == output
  assert data.load(output).num_users == 2

  def fail(*args, **kwargs):
    raise AssertionError("prepared again")

  monkeypatch.setattr(prepare, "prepare_dataset", fail)
  assert prepare.prepare_if_needed("ml-1m", raw, output) == output
  with pytest.raises(ValueError, match="prepared differently"):
    prepare.prepare_if_needed("ml-1m", raw, output, k_core=5)
  with pytest.raises(ValueError, match="prepared differently"):
    prepare.prepare_if_needed("gowalla", raw, output)


# Training batches -----------------------------------------------------------


@pytest.mark.parametrize("pad_side", ["right", "left"])
def test_all_mode_next_item_targets(pad_side):
  seqs = _sequences()
  loader = data.TrainBatches(
      seqs, mode="all", max_len=6, batch_size=3, seed=0, pad_side=pad_side
  )
  # Users whose training part is a single item have no target.
  assert loader.num_examples == sum(n > 3 for n in LENGTHS) == 6
  assert loader.num_batches == 2
  split = data.leave_one_out(seqs)
  train_ends = split.train_end.tolist()
  for batch in _epoch(loader):
    inputs, targets = batch["inputs"], batch["targets"]
    assert inputs.shape == targets.shape == batch["positions"].shape == (3, 6)
    assert all(v.dtype == np.int32 for v in batch.values())
    np.testing.assert_array_equal(
        batch["positions"], np.tile(np.arange(6), (3, 1))
    )
    np.testing.assert_array_equal(
        targets, np.where(inputs != PAD_ID, inputs + 1, PAD_ID)
    )
    for row_inputs, row_targets in zip(inputs, targets):
      real = np.flatnonzero(row_inputs)
      n = len(real)
      if pad_side == "right":
        np.testing.assert_array_equal(real, np.arange(n))
      else:
        np.testing.assert_array_equal(real, np.arange(6 - n, 6))
      # The most recent window ends with the last training item (whose id
      # is its index + 1) and holds up to 6 of the training items before.
      last_target = row_targets[real[-1]]
      assert last_target not in row_inputs  # Else non-causal models leak.
      user = train_ends.index(last_target)
      train_length = split.train_end[user] - split.train_start[user]
      assert n == min(6, train_length - 1)


def test_all_mode_more_windows_cover_each_target_once():
  seqs = _sequences()
  train = _train_items(seqs)
  firsts = set((seqs.offsets[:-1] + 1).tolist())
  # Targets per user: training length - 1 = 0 1 2 4 9 22 0 6; windows of 4.
  for windows, expected_rows in ((0, 14), (2, 9)):
    loader = data.TrainBatches(
        seqs,
        mode="all",
        max_len=4,
        batch_size=1,
        seed=3,
        windows_per_user=windows,
    )
    assert loader.num_examples == expected_rows
    targets = _concat(_epoch(loader), "targets")
    targets = targets[targets != PAD_ID]
    assert len(targets) == len(set(targets.tolist()))
    if windows == 0:
      assert set(targets.tolist()) == train - firsts


@pytest.mark.parametrize("pad_side", ["right", "left"])
def test_all_mode_overlapping_windows_train_each_target_once_in_context(
    pad_side,
):
  seqs = _sequences()
  train = _train_items(seqs)
  firsts = set((seqs.offsets[:-1] + 1).tolist())
  max_len, stride = 4, 2
  loader = data.TrainBatches(
      seqs,
      mode="all",
      max_len=max_len,
      batch_size=1,
      seed=3,
      windows_per_user=0,
      window_stride=stride,
      pad_side=pad_side,
  )
  # Targets per user 0 1 2 4 9 22 0 6: one window up to 4 targets, then
  # one more per 2 targets beyond the first 4: 1+1+1+(1+3)+(1+9)+(1+1).
  assert loader.num_examples == 19
  seen = []
  for batch in _epoch(loader):
    (inputs,), (targets,) = batch["inputs"], batch["targets"]
    for column in np.flatnonzero(targets != PAD_ID):
      target = int(targets[column])
      context = inputs[: column + 1]
      context = context[context != PAD_ID]
      # Consecutive items ending right before the target (causal order).
      np.testing.assert_array_equal(
          context, np.arange(target - len(context), target)
      )
      user = np.searchsorted(seqs.offsets, target - 1, "right") - 1
      preceding = target - 1 - seqs.offsets[user]  # Training items before.
      assert len(context) >= min(preceding, max_len - stride + 1)
      seen.append(target)
  assert sorted(seen) == sorted(train - firsts)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(mode="all", max_len=4, window_stride=2),
        dict(mode="all", max_len=4),
        dict(mode="all", max_len=30),
        dict(mode="prefix", max_len=4),
    ],
)
def test_mean_targets_per_batch_counts_every_target_once(kwargs):
  seqs = _sequences()
  # Every training item but each user's first is a target, once an epoch:
  # (3, 4, 5, 7, 12, 25, 3, 9) items less 2 held out less 1 first.
  total = sum(max(n - 3, 0) for n in LENGTHS)
  assert total == 44
  loader = data.TrainBatches(
      seqs, batch_size=3, seed=1, windows_per_user=0, **kwargs
  )
  one_by_one = data.TrainBatches(
      seqs, batch_size=1, seed=1, windows_per_user=0, **kwargs
  )
  counted = sum(int((b["targets"] != PAD_ID).sum()) for b in _epoch(one_by_one))
  assert counted == total
  expected = 3 * total / loader.num_examples
  assert loader.mean_targets_per_batch == pytest.approx(expected)


def test_window_stride_of_max_len_changes_nothing():
  seqs = _sequences()
  kwargs = dict(mode="all", max_len=4, batch_size=3, seed=5, windows_per_user=0)
  plain = data.TrainBatches(seqs, **kwargs)
  strided = data.TrainBatches(seqs, window_stride=4, **kwargs)
  assert plain.num_batches == strided.num_batches
  for a, b in zip(_epoch(plain, 2), _epoch(strided, 2)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(mode="all", window_stride=5),
        dict(mode="prefix", window_stride=2),
        dict(mode="all", window_stride=-1),
    ],
)
def test_window_stride_out_of_range_is_refused(kwargs):
  with pytest.raises(ValueError, match="window_stride"):
    data.TrainBatches(_sequences(), max_len=4, batch_size=1, seed=0, **kwargs)


def test_prefix_mode_enumerates_every_prefix_once():
  seqs = _sequences()
  train = _train_items(seqs)
  firsts = set((seqs.offsets[:-1] + 1).tolist())
  expected = train - firsts
  for pad_side in ("right", "left"):
    loader = data.TrainBatches(
        seqs,
        mode="prefix",
        max_len=3,
        batch_size=len(expected),
        seed=1,
        pad_side=pad_side,
    )
    assert loader.num_examples == len(expected) and loader.num_batches == 1
    (batch,) = _epoch(loader, epoch=5)
    inputs, positions = batch["inputs"], batch["positions"]
    targets = batch["targets"][:, 0]
    assert inputs.shape == (len(expected), 3)
    assert positions.shape == batch["targets"].shape == (len(expected), 1)
    assert sorted(targets.tolist()) == sorted(expected)
    rows = np.arange(len(targets))
    # The state at `positions` sees the item right before the target.
    np.testing.assert_array_equal(inputs[rows, positions[:, 0]], targets - 1)
    for row_inputs, target in zip(inputs, targets):
      real = row_inputs[row_inputs != PAD_ID]
      user = np.searchsorted(seqs.offsets, target - 1, "right") - 1
      start = seqs.offsets[user]
      want = np.arange(max(start + 1, target - 3), target)
      np.testing.assert_array_equal(real, want)
      if pad_side == "left":
        assert row_inputs[-1] == target - 1


def test_no_validation_or_test_item_in_training_batches():
  seqs = _sequences()
  train = _train_items(seqs)
  for mode in data.MODES:
    loader = data.TrainBatches(
        seqs, mode=mode, max_len=5, batch_size=2, seed=0, windows_per_user=0
    )
    for epoch in range(3):
      for batch in _epoch(loader, epoch):
        for key in ("inputs", "targets"):
          seen = set(batch[key].ravel().tolist()) - {PAD_ID, loader.mask_token}
          assert seen <= train, (mode, key, seen - train)


def test_fixed_seed_same_batches_random_access():
  seqs = _sequences()
  for mode in data.MODES:
    make = lambda seed: data.TrainBatches(
        seqs, mode=mode, max_len=5, batch_size=3, seed=seed, windows_per_user=0
    )
    a, b = make(7), make(7)
    forward = _epoch(a, epoch=2)
    # Out of order and after another epoch, as a resumed run would ask.
    b.batch(0, 0)
    for i in reversed(range(b.num_batches)):
      for key, value in b.batch(2, i).items():
        np.testing.assert_array_equal(value, forward[i][key])
    other_epoch = _concat(_epoch(a, epoch=3), "inputs")
    other_seed = _concat(_epoch(make(8), epoch=2), "inputs")
    assert not np.array_equal(other_epoch, _concat(forward, "inputs"))
    assert not np.array_equal(other_seed, _concat(forward, "inputs"))


@pytest.mark.parametrize("mode", data.MODES)
def test_shards_concatenate_to_the_global_batch(mode):
  seqs = _sequences()
  loader = data.TrainBatches(
      seqs, mode=mode, max_len=4, batch_size=6, seed=0, windows_per_user=0
  )
  for index in range(loader.num_batches):
    whole = loader.batch(1, index)
    parts = [loader.batch(1, index, shard=(p, 3)) for p in range(3)]
    for key, value in whole.items():
      assert parts[0][key].shape[0] == 2
      np.testing.assert_array_equal(_concat(parts, key), value)
  with pytest.raises(ValueError, match="does not divide"):
    loader.batch(0, 0, shard=(0, 4))


def _cloze_originals(batch, token):
  """The unmasked windows: targets written back at their positions."""
  inputs = batch["inputs"].copy()
  for row, (positions, targets) in enumerate(
      zip(batch["positions"], batch["targets"])
  ):
    for position, target in zip(positions, targets):
      if target != PAD_ID:
        assert inputs[row, position] == token
        inputs[row, position] = target
  return inputs


@pytest.mark.parametrize("max_predictions", [6, 2])
def test_cloze_masks(max_predictions):
  seqs = _sequences()
  token = seqs.num_items + 1
  loader = data.TrainBatches(
      seqs,
      mode="cloze",
      max_len=6,
      batch_size=4,
      seed=0,
      mask_prob=0.3,
      windows_per_user=0,
      max_predictions=max_predictions,
  )
  assert loader.mask_token == token
  masked_total = real_total = 0
  for epoch in range(20):
    for batch in _epoch(loader, epoch):
      inputs, targets = batch["inputs"], batch["targets"]
      assert targets.shape == batch["positions"].shape == (4, max_predictions)
      masked = inputs == token
      counts = masked.sum(axis=1)
      assert ((counts >= 1) & (counts <= max_predictions)).all()
      # Every masked position is predicted once, in order, then PAD_ID.
      np.testing.assert_array_equal((targets != PAD_ID).sum(axis=1), counts)
      for row in range(4):
        np.testing.assert_array_equal(
            batch["positions"][row, : counts[row]], np.flatnonzero(masked[row])
        )
      original = _cloze_originals(batch, token)
      real = original != PAD_ID
      assert (
          original[:, 1:][real[:, :-1] & real[:, 1:]]
          == (original[:, :-1][real[:, :-1] & real[:, 1:]] + 1)
      ).all()
      masked_total += masked.sum()
      real_total += real.sum()
  if max_predictions == 6:  # No cap: the drawn rate.
    assert 0.25 < masked_total / real_total < 0.45


def test_cloze_predicts_recboles_share_by_default():
  seqs = _sequences()
  loader = data.TrainBatches(
      seqs, mode="cloze", max_len=10, batch_size=2, seed=0, mask_prob=0.2
  )
  assert loader.max_predictions == 2  # int(0.2 * 10)
  assert loader.batch(0, 0)["positions"].shape == (2, 2)
  assert data.default_max_predictions(0.2, 200) == 40
  assert data.default_max_predictions(0.01, 20) == 1
  with pytest.raises(ValueError, match="max_predictions"):
    data.TrainBatches(
        seqs, mode="cloze", max_len=4, batch_size=2, seed=0, max_predictions=5
    )
  with pytest.raises(ValueError, match="mask_last_prob"):
    data.TrainBatches(
        seqs, mode="cloze", max_len=4, batch_size=2, seed=0, mask_last_prob=-0.1
    )


@pytest.mark.parametrize("pad_side", ["right", "left"])
def test_cloze_fine_tuning_windows_mask_their_last_item(pad_side):
  seqs = _sequences()
  token = seqs.num_items + 1
  always = data.TrainBatches(
      seqs,
      mode="cloze",
      max_len=6,
      batch_size=4,
      seed=0,
      mask_prob=0.3,
      windows_per_user=0,
      pad_side=pad_side,
      mask_last_prob=1.0,
  )
  for batch in _epoch(always, 3):
    inputs = batch["inputs"]
    masked = inputs == token
    assert (masked.sum(axis=1) == 1).all()
    last = (np.flatnonzero(masked[row])[0] for row in range(len(inputs)))
    for row, column in enumerate(last):
      # The masked item is the window's last one: nothing real after it.
      assert (inputs[row, column + 1 :] == PAD_ID).all()
      assert batch["positions"][row, 0] == column
      # Items are consecutive ids in _sequences: the target follows.
      if column > 0 and inputs[row, column - 1] != PAD_ID:
        assert batch["targets"][row, 0] == inputs[row, column - 1] + 1
  half = data.TrainBatches(
      seqs,
      mode="cloze",
      max_len=6,
      batch_size=4,
      seed=0,
      mask_prob=0.3,
      windows_per_user=0,
      mask_last_prob=0.5,
      max_predictions=6,
  )
  single = [
      (batch["targets"] != PAD_ID).sum(axis=1) == 1
      for epoch in range(30)
      for batch in _epoch(half, epoch)
  ]
  assert 0.5 < np.mean(single) < 0.8  # Half, plus cloze rows with one draw.


def test_cloze_mask_function():
  real = np.zeros((3, 5), bool)
  real[0, :2] = True
  real[1] = True
  rng = np.random.default_rng(0)
  for _ in range(50):
    masked = data.cloze_mask(rng, real, 0.01)
    assert not (masked & ~real).any()
    np.testing.assert_array_equal(masked.any(axis=1), [True, True, False])
  a = data.cloze_mask(np.random.default_rng(4), real, 0.5)
  b = data.cloze_mask(np.random.default_rng(4), real, 0.5)
  np.testing.assert_array_equal(a, b)


def test_cloze_mask_keeps_the_smallest_draws_up_to_the_cap():
  real = np.ones((200, 8), bool)
  draws = np.random.default_rng(5).random(real.shape)
  capped = data.cloze_mask(np.random.default_rng(5), real, 0.6, max_masked=2)
  for row in range(200):
    drawn = np.flatnonzero(draws[row] < 0.6)
    if drawn.size == 0:
      drawn = [np.argmin(draws[row])]
    kept = sorted(drawn, key=lambda col: draws[row, col])[:2]
    np.testing.assert_array_equal(np.flatnonzero(capped[row]), sorted(kept))


def test_bad_arguments():
  seqs = _sequences()
  with pytest.raises(ValueError, match="mode"):
    data.TrainBatches(seqs, mode="next", max_len=4, batch_size=2, seed=0)
  with pytest.raises(ValueError, match="pad_side"):
    data.TrainBatches(
        seqs, mode="all", max_len=4, batch_size=2, seed=0, pad_side="top"
    )
  with pytest.raises(ValueError, match="is an item id"):
    data.TrainBatches(
        seqs, mode="cloze", max_len=4, batch_size=2, seed=0, mask_token=3
    )
  loader = data.TrainBatches(
      seqs, mode="all", max_len=4, batch_size=100, seed=0
  )
  assert loader.num_batches == 0
  with pytest.raises(IndexError):
    loader.batch(0, 0)


# Evaluation batches ---------------------------------------------------------


@pytest.mark.parametrize("stage", ["valid", "test"])
@pytest.mark.parametrize("pad_side", ["right", "left"])
def test_eval_batches(stage, pad_side):
  seqs = _sequences()
  held_out = 2 if stage == "valid" else 1
  batches = list(
      data.eval_batches(
          seqs,
          stage,
          max_len=4,
          batch_size=3,
          pad_side=pad_side,
          with_history=True,
      )
  )
  assert len(batches) == data.num_eval_batches(seqs, 3) == 3
  valid = _concat(batches, "valid")
  users = _concat(batches, "users")
  assert sorted(users[valid].tolist()) == list(range(1, seqs.num_users + 1))
  assert (users[~valid] == 0).all() and valid.sum() == seqs.num_users
  for batch in batches:
    assert batch["inputs"].shape == (3, 4)
    assert batch["history"].shape == (3, max(LENGTHS) - held_out)
    for key in ("positions", "targets", "valid", "users"):
      assert batch[key].shape == (3,)
    for row in range(3):
      inputs, history = batch["inputs"][row], batch["history"][row]
      if not batch["valid"][row]:
        assert not inputs.any() and not history.any()
        assert batch["targets"][row] == 0
        continue
      user = batch["users"][row]
      target = seqs.offsets[user] - held_out + 1  # ids are positions + 1
      assert batch["targets"][row] == target
      assert inputs[batch["positions"][row]] == target - 1
      start = seqs.offsets[user - 1] + 1
      np.testing.assert_array_equal(
          inputs[inputs != PAD_ID], np.arange(max(start, target - 4), target)
      )
      np.testing.assert_array_equal(
          history[history != PAD_ID], np.arange(start, target)
      )
      if pad_side == "left":
        assert inputs[-1] == target - 1


def test_eval_batches_bert4rec_mask_and_shards():
  seqs = _sequences()
  token = seqs.num_items + 1
  kwargs = dict(max_len=4, batch_size=4, mask_token=token)
  whole = list(data.eval_batches(seqs, "test", **kwargs))
  for batch in whole:
    for row in np.flatnonzero(batch["valid"]):
      inputs, position = batch["inputs"][row], batch["positions"][row]
      assert inputs[position] == token and (inputs == token).sum() == 1
      target = batch["targets"][row]
      assert inputs[position - 1] == target - 1
      assert (inputs != PAD_ID).sum() <= 4
  parts = [
      list(data.eval_batches(seqs, "test", shard=(p, 2), **kwargs))
      for p in range(2)
  ]
  for i, batch in enumerate(whole):
    for key, value in batch.items():
      np.testing.assert_array_equal(
          np.concatenate([parts[0][i][key], parts[1][i][key]]), value
      )
  left = next(data.eval_batches(seqs, "valid", pad_side="left", **kwargs))
  assert (left["inputs"][:, -1] == token).all()
  assert (left["positions"] == 3).all()


# Real data ------------------------------------------------------------------


def test_ml1m_batches_are_fast_and_small(ml1m_prepared):
  seqs = data.load(ml1m_prepared)
  tracemalloc.start()
  loader = data.TrainBatches(
      seqs, mode="prefix", max_len=200, batch_size=2048, seed=2000
  )
  loader.batch(0, 0)
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  # Materialised prefixes would take num_examples * 200 * 4 bytes (~785 MB).
  assert loader.num_examples == 999611 - 3 * 6040
  assert peak < 64 * 2**20
  for mode in data.MODES:
    loader = data.TrainBatches(
        seqs,
        mode=mode,
        max_len=200,
        batch_size=2048,
        seed=2000,
        windows_per_user=0,
    )
    loader.batch(0, 1)
    start = time.perf_counter()
    batch = loader.batch(0, 0)
    elapsed = time.perf_counter() - start
    assert batch["inputs"].shape == (2048, 200)
    # Gathering on demand takes ~0.05 s on an idle 2-core machine; building
    # prefixes would take seconds. The bound leaves room for a loaded one.
    assert elapsed < 0.5, (mode, elapsed)


def test_ml1m_eval_covers_every_user_once(ml1m_prepared):
  seqs = data.load(ml1m_prepared)
  split = data.leave_one_out(seqs)
  for stage, expected in (
      ("valid", split.valid_items),
      ("test", split.test_items),
  ):
    batches = list(data.eval_batches(seqs, stage, max_len=200, batch_size=1024))
    valid = _concat(batches, "valid")
    users = _concat(batches, "users")[valid]
    np.testing.assert_array_equal(users, np.arange(1, 6041))
    np.testing.assert_array_equal(_concat(batches, "targets")[valid], expected)
