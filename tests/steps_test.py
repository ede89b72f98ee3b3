"""Tests of linrec_jax.training.steps on one device.

The pmap body (`axis_name` set) runs here under `jax.vmap` with the same axis
name: `psum` and `axis_index` mean the same there, so splitting a batch into
row shards can be checked without several devices. The real launchers on 1 to
8 devices are checked in `sharding_test.py`.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from linrec_jax.constants import PAD_ID
from linrec_jax.layers.config import EncoderConfig
from linrec_jax.models import SASRec
from linrec_jax.training import steps
import reference_loss

NUM_ITEMS, MAX_LEN, BATCH, SHARDS = 30, 5, 8, 4
AXIS = "data"


def _model(dropout=0.0):
  return SASRec(
      NUM_ITEMS,
      EncoderConfig(
          max_len=MAX_LEN,
          hidden=8,
          layers=1,
          heads=2,
          ffn=16,
          dropout=dropout,
          attention="linrec",
      ),
  )


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, MAX_LEN + 1, BATCH)
  lengths[0] = 1  # One row with a single target, others with up to 5.
  real = np.arange(MAX_LEN) < lengths[:, None]
  items = rng.integers(1, NUM_ITEMS + 1, (BATCH, MAX_LEN + 1))
  return {
      "inputs": jnp.asarray(np.where(real, items[:, :-1], PAD_ID), jnp.int32),
      "positions": jnp.tile(jnp.arange(MAX_LEN, dtype=jnp.int32), (BATCH, 1)),
      "targets": jnp.asarray(np.where(real, items[:, 1:], PAD_ID), jnp.int32),
  }


def _eval_batch():
  batch = _batch(seed=3)
  valid = jnp.arange(BATCH) < BATCH - 2
  lengths = jnp.sum(batch["inputs"] != PAD_ID, axis=1)
  return {
      "inputs": batch["inputs"],
      "positions": lengths - 1,
      "targets": jnp.where(valid, batch["targets"][:, 0], PAD_ID),
      "valid": valid,
  }


def _shards(batch):
  """`[SHARDS, BATCH / SHARDS, ...]`: contiguous row shards, as devices get."""
  return jax.tree.map(lambda x: x.reshape((SHARDS, -1) + x.shape[1:]), batch)


def _state(model, tx):
  return steps.create_train_state(model, tx, jax.random.PRNGKey(0), MAX_LEN)


def _on_shards(step_fn, state, batch, rng):
  """The pmap body on SHARDS row shards, under vmap; returns shard 0."""
  mapped = jax.vmap(step_fn, in_axes=(None, 0, None), axis_name=AXIS)
  return jax.tree.map(lambda x: x[0], mapped(state, _shards(batch), rng))


def test_example_keys_depend_only_on_the_global_row():
  rng = jax.random.PRNGKey(7)
  every = steps.example_keys(rng, 0, 8)
  np.testing.assert_array_equal(steps.example_keys(rng, 4, 4), every[4:])
  assert len({tuple(np.asarray(k).ravel()) for k in every}) == 8


@pytest.mark.parametrize(
    "sharded, microbatches", [(False, 1), (True, 1), (False, 4), (True, 2)]
)
def test_update_is_the_gradient_of_the_global_mean_loss(sharded, microbatches):
  # SGD with rate 1 applies the gradient itself; a factor of SHARDS (a sum
  # instead of a mean) or 1/SHARDS (a mean of means), or of the number of
  # microbatches, would show up here.
  model, tx = _model(), optax.sgd(1.0)
  state, batch = _state(model, tx), _batch()
  rng = jax.random.PRNGKey(1)
  if sharded:
    step = steps.make_train_step(
        model,
        tx,
        loss="ce",
        num_items=NUM_ITEMS,
        microbatches=microbatches,
        axis_name=AXIS,
    )
    new_state, metrics = jax.jit(lambda s, b, r: _on_shards(step, s, b, r))(
        state, batch, rng
    )
  else:
    step = steps.make_train_step(
        model, tx, loss="ce", num_items=NUM_ITEMS, microbatches=microbatches
    )
    new_state, metrics = jax.jit(step)(state, batch, rng)
  applied = jax.tree.map(jnp.subtract, state.params, new_state.params)
  expected = reference_loss.global_mean_loss_grads(model, state.params, batch)
  chex.assert_trees_all_close(applied, expected, atol=1e-6, rtol=1e-4)
  assert metrics["count"] == int(jnp.sum(batch["targets"] != PAD_ID))
  assert int(new_state.step) == 1


def test_a_fixed_loss_normalizer_divides_the_loss_sum_by_it():
  # Every target weighs 1 / 7 instead of 1 / (the batch's targets).
  model, tx = _model(), optax.sgd(1.0)
  state, batch = _state(model, tx), _batch()
  step = steps.make_train_step(
      model, tx, loss="ce", num_items=NUM_ITEMS, loss_normalizer=7.0
  )
  new_state, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(1))
  applied = jax.tree.map(jnp.subtract, state.params, new_state.params)
  count = int(jnp.sum(batch["targets"] != PAD_ID))
  expected = jax.tree.map(
      lambda g: g * count / 7.0,
      reference_loss.global_mean_loss_grads(model, state.params, batch),
  )
  chex.assert_trees_all_close(applied, expected, atol=1e-6, rtol=1e-4)
  reference = steps.make_train_step(model, tx, loss="ce", num_items=NUM_ITEMS)
  _, plain = jax.jit(reference)(state, batch, jax.random.PRNGKey(1))
  np.testing.assert_allclose(metrics["loss"], plain["loss"], rtol=1e-6)


def test_row_shards_train_like_the_whole_batch_with_dropout():
  # Per-example randomness: the dropout masks of a row do not depend on how
  # the batch is split, so the updates agree. Each step is traced once.
  model, tx = _model(dropout=0.3), optax.adam(1e-2)
  state, rng = _state(model, tx), jax.random.PRNGKey(1)
  chex.clear_trace_counter()
  whole = jax.jit(
      chex.assert_max_traces(
          steps.make_train_step(model, tx, loss="ce", num_items=NUM_ITEMS), n=1
      )
  )
  body = steps.make_train_step(
      model, tx, loss="ce", num_items=NUM_ITEMS, axis_name=AXIS
  )
  sharded = jax.jit(lambda s, b, r: _on_shards(body, s, b, r))
  _assert_same_training(whole, sharded, state, rng)


def _assert_same_training(step_a, step_b, state, rng, steps_run=3):
  """Runs both steps on the same batches; states and losses agree."""
  state_a = state_b = state
  for seed in range(steps_run):
    state_a, metrics_a = step_a(state_a, _batch(seed), rng)
    state_b, metrics_b = step_b(state_b, _batch(seed), rng)
  chex.assert_trees_all_close(state_a, state_b, atol=1e-5, rtol=0)
  np.testing.assert_allclose(metrics_a["loss"], metrics_b["loss"], rtol=1e-6)
  assert metrics_a["count"] == metrics_b["count"]
  assert int(state_a.step) == steps_run


def test_microbatches_train_like_the_whole_batch_with_dropout():
  # Each row keeps its key, so accumulating chunks changes only the order
  # of the float sums.
  model, tx = _model(dropout=0.3), optax.adam(1e-2)
  state, rng = _state(model, tx), jax.random.PRNGKey(1)
  whole = jax.jit(
      steps.make_train_step(
          model, tx, loss="sampled", num_items=NUM_ITEMS, num_negatives=7
      )
  )
  chunked = jax.jit(
      steps.make_train_step(
          model,
          tx,
          loss="sampled",
          num_items=NUM_ITEMS,
          num_negatives=7,
          microbatches=4,
      )
  )
  _assert_same_training(whole, chunked, state, rng)


def test_microbatches_must_divide_the_rows():
  model, tx = _model(), optax.sgd(1.0)
  step = steps.make_train_step(
      model, tx, loss="ce", num_items=NUM_ITEMS, microbatches=3
  )
  with pytest.raises(ValueError, match="microbatches=3 does not divide the 8"):
    jax.jit(step)(_state(model, tx), _batch(), jax.random.PRNGKey(1))


def test_eval_sums_of_row_shards_add_up():
  model = _model()
  params = _state(model, optax.sgd(1.0)).params
  batch = _eval_batch()
  whole = jax.jit(steps.make_eval_step(model, protocol="full", ks=(1, 5)))
  body = steps.make_eval_step(model, protocol="full", ks=(1, 5), axis_name=AXIS)
  sharded = jax.jit(jax.vmap(body, in_axes=(None, 0), axis_name=AXIS))
  whole, shards = whole(params, batch), sharded(params, _shards(batch))
  assert float(whole["count"]) == BATCH - 2
  for name, value in whole.items():
    np.testing.assert_array_equal(shards[name], np.full(SHARDS, value))


# Compiles two steps at a size where memory shows: slow. The default run
# checks that microbatches train like the whole batch.
@pytest.mark.slow
def test_microbatches_keep_fewer_activations():
  model = SASRec(
      NUM_ITEMS,
      EncoderConfig(max_len=256, hidden=32, layers=2, heads=4, ffn=64),
  )
  tx = optax.adam(1e-3)
  state = jax.eval_shape(
      lambda key: steps.create_train_state(model, tx, key, 8),
      jax.random.PRNGKey(0),
  )
  batch = {
      "inputs": jax.ShapeDtypeStruct((16, 256), jnp.int32),
      "positions": jax.ShapeDtypeStruct((16, 1), jnp.int32),
      "targets": jax.ShapeDtypeStruct((16, 1), jnp.int32),
  }

  def temp_bytes(microbatches):
    step = jax.jit(
        steps.make_train_step(
            model, tx, loss="ce", num_items=NUM_ITEMS, microbatches=microbatches
        )
    )
    analysis = (
        step.lower(state, batch, jax.random.PRNGKey(1))
        .compile()
        .memory_analysis()
    )
    if analysis is None:
      pytest.skip("this backend reports no memory analysis")
    return analysis.temp_size_in_bytes

  assert temp_bytes(4) < 0.5 * temp_bytes(1)


def test_sampled_loss_shares_negatives_per_example_and_drops_hits():
  # NumPy reference: row r draws S ids from its key (module docstring); each
  # position's softmax is over its target and the S ids, minus any id equal
  # to that position's target.
  num_negatives = 40  # > NUM_ITEMS: every row has accidental hits.
  model, tx = _model(), optax.sgd(1.0)
  state, batch, rng = _state(model, tx), _batch(), jax.random.PRNGKey(5)
  step = jax.jit(
      steps.make_train_step(
          model,
          tx,
          loss="sampled",
          num_items=NUM_ITEMS,
          num_negatives=num_negatives,
      )
  )
  _, metrics = step(state, batch, rng)
  states = np.asarray(
      model.apply({"params": state.params}, batch["inputs"]), np.float64
  )
  table = np.asarray(state.params["embed"]["items"]["embedding"], np.float64)
  keys = steps.example_keys(jax.random.fold_in(rng, 0), 0, BATCH)
  total, count = 0.0, 0
  for row in range(BATCH):
    negatives_key = jax.random.split(keys[row])[1]
    negatives = np.asarray(
        jax.random.randint(negatives_key, (num_negatives,), 1, NUM_ITEMS + 1)
    )
    for position, target in enumerate(np.asarray(batch["targets"][row])):
      if target == PAD_ID:
        continue
      kept = negatives[negatives != target]
      logits = states[row, position] @ table[np.concatenate([[target], kept])].T
      total += (
          np.log(np.sum(np.exp(logits - logits.max())))
          + logits.max()
          - logits[0]
      )
      count += 1
  assert float(metrics["count"]) == count
  np.testing.assert_allclose(float(metrics["loss"]), total / count, rtol=1e-5)


def test_eval_step_reports_both_protocols_from_the_same_scores():
  model = _model()
  params = _state(model, optax.sgd(1.0)).params
  batch = dict(_eval_batch())
  # Each row's history: its inputs and, in some rows, two items it does not
  # read (older than its window).
  history = np.concatenate(
      [np.array(batch["inputs"]), np.zeros((BATCH, 2), np.int32)], axis=1
  )
  history[::2, -2:] = [1, NUM_ITEMS]
  batch["history"] = jnp.asarray(history)
  sums = jax.jit(steps.make_eval_step(model, protocol="full", ks=(5,)))(
      params, batch
  )
  # NumPy reference from the model's scores: ranks with ties against the
  # target, padding column out, history dropped or kept.
  states = model.apply({"params": params}, batch["inputs"])
  picked = states[jnp.arange(BATCH), batch["positions"]]
  scores = np.asarray(model.apply({"params": params}, picked, method="logits"))
  expected = {
      "ndcg@5": 0.0,
      "ndcg@5_nohist": 0.0,
      "seen@10": 0.0,
      "seen_input@10": 0.0,
  }
  for row in np.flatnonzero(np.asarray(batch["valid"])):
    target = int(batch["targets"][row])
    seen = set(history[row][history[row] != PAD_ID]) - {target}
    above = [
        i
        for i in range(1, NUM_ITEMS + 1)
        if i != target and scores[row, i] >= scores[row, target]
    ]
    for name, competing in (
        ("ndcg@5", above),
        ("ndcg@5_nohist", [i for i in above if i not in seen]),
    ):
      rank = 1 + len(competing)
      expected[name] += 1 / np.log2(rank + 1) if rank <= 5 else 0.0
    top10 = np.argsort(-scores[row, 1:], kind="stable")[:10] + 1
    expected["seen@10"] += len(set(top10) & set(history[row]) - {PAD_ID})
    read = set(np.asarray(batch["inputs"][row])) - {PAD_ID}
    expected["seen_input@10"] += len(set(top10) & read)
  for name, value in expected.items():
    np.testing.assert_allclose(
        float(sums[name]), value, rtol=1e-5, err_msg=name
    )
  assert float(sums["ndcg@5_nohist"]) >= float(sums["ndcg@5"])


@pytest.mark.parametrize("poison", ["nan_param", "inf_lr"])
def test_a_non_finite_step_is_not_applied_and_flagged(poison):
  model = _model()
  lr = float("inf") if poison == "inf_lr" else 0.1
  tx = optax.adam(lr)
  state, batch, rng = _state(model, tx), _batch(), jax.random.PRNGKey(5)
  if poison == "nan_param":
    table = state.params["embed"]["items"]["embedding"]
    params = jax.tree.map(lambda x: x, state.params)
    params["embed"]["items"]["embedding"] = table.at[3, 0].set(jnp.nan)
    state = state.replace(params=params)
  before = jax.device_get(state)
  step = jax.jit(
      steps.make_train_step(model, tx, loss="ce", num_items=NUM_ITEMS)
  )
  after, metrics = step(state, batch, rng)
  assert not bool(metrics["finite"])
  assert int(after.step) == int(before.step) + 1
  for old, new in zip(
      jax.tree.leaves((before.params, before.opt_state)),
      jax.tree.leaves((after.params, after.opt_state)),
  ):
    np.testing.assert_array_equal(np.asarray(new), np.asarray(old))


def test_a_finite_step_is_flagged_finite():
  model, tx = _model(), optax.adam(1e-3)
  state, batch, rng = _state(model, tx), _batch(), jax.random.PRNGKey(5)
  after, metrics = jax.jit(
      steps.make_train_step(model, tx, loss="ce", num_items=NUM_ITEMS)
  )(state, batch, rng)
  assert bool(metrics["finite"])
  assert not np.array_equal(
      np.asarray(after.params["embed"]["items"]["embedding"]),
      np.asarray(state.params["embed"]["items"]["embedding"]),
  )


def test_blockwise_scores_train_like_the_whole_score_tensor():
  # Blocks of 3 of the batch's 40 positions (padding skipped) against all
  # of them at once: the same loss and update, with dropout.
  model, tx = _model(dropout=0.3), optax.adam(1e-2)
  state, batch, rng = _state(model, tx), _batch(), jax.random.PRNGKey(5)
  results = [
      jax.jit(
          steps.make_train_step(
              model, tx, loss="ce", num_items=NUM_ITEMS, score_block_rows=rows
          )
      )(state, batch, rng)
      for rows in (None, 3)
  ]
  (whole_state, whole), (block_state, block) = results
  np.testing.assert_allclose(block["loss"], whole["loss"], rtol=1e-6)
  chex.assert_trees_all_close(
      block_state.params, whole_state.params, atol=1e-6, rtol=1e-5
  )


def test_blockwise_scores_never_hold_the_whole_score_tensor():
  # 16 x 256 positions x 3,001 items: 49 MB of float32 scores at once.
  model = SASRec(
      3000, EncoderConfig(max_len=256, hidden=16, layers=1, heads=2, ffn=16)
  )
  tx = optax.adam(1e-3)
  state = jax.eval_shape(
      lambda key: steps.create_train_state(model, tx, key, 8),
      jax.random.PRNGKey(0),
  )
  shape = jax.ShapeDtypeStruct((16, 256), jnp.int32)
  batch = {"inputs": shape, "positions": shape, "targets": shape}

  def temp_bytes(rows):
    step = steps.make_train_step(
        model, tx, loss="ce", num_items=3000, score_block_rows=rows
    )
    compiled = jax.jit(step).lower(state, batch, jax.random.PRNGKey(1))
    analysis = compiled.compile().memory_analysis()
    if analysis is None:
      pytest.skip("this backend reports no memory analysis")
    return analysis.temp_size_in_bytes

  whole = temp_bytes(None)
  assert whole > 16 * 256 * 3001 * 4
  assert temp_bytes(128) < 0.25 * whole
