"""Length-bucketed training batches: same examples, exact cropping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linrec_jax import data
from linrec_jax import losses
from linrec_jax.constants import PAD_ID
from linrec_jax.layers.config import EncoderConfig
from linrec_jax.layers.encoder import gather_rows
from linrec_jax.models import BERT4Rec
from linrec_jax.models import SASRec

MAX_LEN, BUCKET, BATCH = 12, 4, 4
# Cloze: more scored columns (T) than the narrowest bucket.
MASK_PROB, MAX_PREDICTIONS = 0.5, 6
# Item ids are 1..n in order, so a real row is a run of consecutive ids.
LENGTHS = (3, 4, 5, 7, 12, 25, 3, 9, 16, 6, 4, 30, 8, 5, 11, 3)


def _sequences():
  offsets = np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64)
  items = np.arange(1, offsets[-1] + 1, dtype=np.int32)
  return data.Sequences(items, offsets, int(offsets[-1]), {})


def _loader(mode, bucket, seed=3):
  cloze = dict(mask_prob=MASK_PROB, max_predictions=MAX_PREDICTIONS)
  return data.TrainBatches(
      _sequences(),
      mode=mode,
      max_len=MAX_LEN,
      batch_size=BATCH,
      seed=seed,
      windows_per_user=0,
      length_bucket=bucket,
      **(cloze if mode == "cloze" else {}),
  )


def _epoch(loader, epoch=0):
  return [loader.batch(epoch, i) for i in range(loader.num_batches)]


def _real_targets(batches):
  return sorted(
      int(t) for b in batches for t in b["targets"].ravel() if t != PAD_ID
  )


@pytest.mark.parametrize("mode", ["all", "prefix"])
def test_an_epoch_trains_on_the_same_targets(mode):
  plain, bucketed = _loader(mode, 0), _loader(mode, BUCKET)
  assert plain.num_batches == bucketed.num_batches
  for epoch in (0, 1):
    assert _real_targets(_epoch(bucketed, epoch)) == _real_targets(
        _epoch(plain, epoch)
    )


@pytest.mark.parametrize("mode", ["all", "prefix"])
def test_batches_are_cropped_to_a_bucket_above_their_longest_row(mode):
  for batch in _epoch(_loader(mode, BUCKET)):
    inputs = batch["inputs"]
    width = inputs.shape[1]
    longest = int((inputs != PAD_ID).sum(1).max())
    assert width == MAX_LEN or width % BUCKET == 0
    assert longest <= width < longest + BUCKET
    for row, target in zip(inputs, batch["targets"]):
      real = row[row != PAD_ID]
      # Real items first (right padding), consecutive, nothing cut away.
      np.testing.assert_array_equal(row[: len(real)], real)
      np.testing.assert_array_equal(np.diff(real), 1)
      if mode == "all":
        np.testing.assert_array_equal(target[: len(real)], real + 1)
        assert (target[len(real) :] == PAD_ID).all()
      else:
        assert int(target[0]) == int(real[-1]) + 1


def test_same_seed_same_batches_and_epochs_differ():
  first, again = _loader("all", BUCKET), _loader("all", BUCKET)
  for index in range(first.num_batches):
    for key in ("inputs", "targets"):
      np.testing.assert_array_equal(
          first.batch(1, index)[key], again.batch(1, index)[key]
      )
  assert any(
      not np.array_equal(a["inputs"], b["inputs"])
      for a, b in zip(_epoch(first, 0), _epoch(first, 1))
  )


def test_cloze_batches_are_cropped_and_keep_every_masked_position():
  loader = _loader("cloze", BUCKET)
  mask_token = loader.mask_token
  narrow = False
  for batch in _epoch(loader) + _epoch(loader, 1):
    inputs, positions, targets = (
        batch[k] for k in ("inputs", "positions", "targets")
    )
    width = inputs.shape[1]
    longest = int((inputs != PAD_ID).sum(1).max())
    assert width == MAX_LEN or width % BUCKET == 0
    assert longest <= width < longest + BUCKET
    assert positions.shape[1] == min(width, MAX_PREDICTIONS)
    narrow |= width < MAX_PREDICTIONS
    assert (positions < width).all()
    for row, position, target in zip(inputs, positions, targets):
      length = int((row != PAD_ID).sum())
      assert (row[length:] == PAD_ID).all()
      masked = np.flatnonzero(row == mask_token)
      scored = target != PAD_ID
      # Every masked position is scored, once, and nothing else is.
      np.testing.assert_array_equal(np.sort(position[scored]), masked)
      # Ids are consecutive in a row: item = first item + position.
      first = target[scored] - position[scored]
      assert (first == first[0]).all()
      kept = np.flatnonzero((row != PAD_ID) & (row != mask_token))
      np.testing.assert_array_equal(row[kept], first[0] + kept)
  assert narrow  # Some batch cropped T itself.


def _cloze_count_by_enumeration(length, mask_prob, max_masked):
  """E[masked positions] of one row, over all 2^length draws."""
  total = 0.0
  for pattern in range(2**length):
    drawn = bin(pattern).count("1")
    chance = mask_prob**drawn * (1 - mask_prob) ** (length - drawn)
    total += chance * min(max(drawn, 1), max_masked)
  return total


def test_expected_cloze_targets_against_enumeration():
  lengths = np.array([0, 1, 2, 3, 5, 8, 8])
  cases = ((0.2, 3, 0.0), (0.5, 2, 0.25), (1.0, 4, 0.0))
  for mask_prob, max_masked, last in cases:
    got = data.expected_cloze_targets(lengths, mask_prob, max_masked, last)
    want = [
        0.0
        if n == 0
        else (1 - last) * _cloze_count_by_enumeration(n, mask_prob, max_masked)
        + last
        for n in lengths
    ]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_cloze_epoch_normalizer_is_the_mean_of_the_drawn_targets():
  loader = _loader("cloze", BUCKET)
  counts = [
      int((b["targets"] != PAD_ID).sum())
      for epoch in range(1000)
      for b in _epoch(loader, epoch)
  ]
  mean, spread = np.mean(counts), np.std(counts) / np.sqrt(len(counts))
  assert abs(mean - loader.mean_targets_per_batch) < 4 * spread


def _padded(batch, mode):
  """The batch padded back to MAX_LEN columns (its inputs, and in mode all
  its positions and targets)."""
  extra = MAX_LEN - batch["inputs"].shape[1]
  pad = lambda x: np.pad(x, ((0, 0), (0, extra)))
  out = dict(batch, inputs=pad(batch["inputs"]))
  if mode == "all":
    out["positions"] = np.tile(
        np.arange(MAX_LEN, dtype=np.int32), (len(batch["inputs"]), 1)
    )
    out["targets"] = pad(batch["targets"])
  return out


@pytest.mark.parametrize("attention", ["linrec", "softmax"])
@pytest.mark.parametrize("mode", ["all", "prefix", "cloze"])
def test_cropped_batch_gives_the_padded_loss_and_gradients(attention, mode):
  num_items = sum(LENGTHS)
  config = EncoderConfig(
      max_len=MAX_LEN,
      hidden=8,
      layers=2,
      heads=2,
      ffn=16,
      dropout=0.0,
      attention=attention,
      causal=mode != "cloze",
  )
  model = (BERT4Rec if mode == "cloze" else SASRec)(num_items, config)
  params = model.init(jax.random.key(0), jnp.zeros((1, MAX_LEN), jnp.int32))[
      "params"
  ]

  def loss(params, batch):
    states = model.apply({"params": params}, batch["inputs"])
    picked = gather_rows(states, batch["positions"])
    logits = model.apply({"params": params}, picked, method="logits")
    return losses.safe_mean(*losses.cross_entropy(logits, batch["targets"]))

  value_and_grad = jax.jit(jax.value_and_grad(loss))
  cropped_any = False
  for batch in _epoch(_loader(mode, BUCKET)):
    cropped_any |= batch["inputs"].shape[1] < MAX_LEN
    value, grads = value_and_grad(params, batch)
    padded_value, padded_grads = value_and_grad(params, _padded(batch, mode))
    np.testing.assert_allclose(value, padded_value, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(padded_grads)):
      np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-7)
  assert cropped_any


@pytest.mark.parametrize(
    "options",
    [
        dict(mode="cloze", pad_side="left"),
        dict(mode="all", pad_side="left"),
        dict(mode="all", length_bucket=-1),
    ],
)
def test_bad_bucket_options(options):
  options = dict(dict(length_bucket=BUCKET), **options)
  with pytest.raises(ValueError, match="length_bucket"):
    data.TrainBatches(
        _sequences(), max_len=MAX_LEN, batch_size=BATCH, seed=0, **options
    )
