"""Tests of linrec_jax.training.compiler_options: which steps get XLA options,
and that a step compiled with them computes the same update."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from linrec_jax.layers.config import EncoderConfig
from linrec_jax.models import SASRec
from linrec_jax.training import compiler_options
from linrec_jax.training import sharding
from linrec_jax.training import steps
import reference_loss

NUM_ITEMS, MAX_LEN, BATCH = 40, 12, 8


def _prefix_batch():
  """Prefix samples: one target per row, at the row's last real position."""
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, MAX_LEN + 1, BATCH)
  items = rng.integers(1, NUM_ITEMS + 1, (BATCH, MAX_LEN))
  inputs = np.where(np.arange(MAX_LEN) < lengths[:, None], items, 0)
  return {
      "inputs": jnp.asarray(inputs, jnp.int32),
      "positions": jnp.asarray(lengths - 1, jnp.int32)[:, None],
      "targets": jnp.asarray(rng.integers(1, NUM_ITEMS + 1, (BATCH, 1))),
  }


def test_only_prefix_steps_on_cpu_keep_dots_alone_in_the_library():
  dots_only = compiler_options.CPU_LIBRARY_DOTS_ONLY
  assert compiler_options.train_step_options("prefix", "cpu") == dots_only
  for mode in ("all", "cloze"):
    assert compiler_options.train_step_options(mode, "cpu") == {}
  for platform in ("gpu", "tpu"):
    assert compiler_options.train_step_options("prefix", platform) == {}


def _model():
  return SASRec(
      NUM_ITEMS,
      EncoderConfig(
          max_len=MAX_LEN, hidden=16, layers=2, heads=2, ffn=32, dropout=0.0
      ),
  )


def _launcher(model, tx, options):
  return sharding.make_launcher(
      "mesh",
      jax.devices()[:1],
      model,
      tx,
      loss="ce",
      num_items=NUM_ITEMS,
      num_negatives=0,
      protocol="full",
      ks=(10,),
      compiler_options=options,
  )


def test_the_mesh_launcher_compiles_its_step_with_the_options():
  # XLA refuses an unknown value only if the option reaches the compiler.
  model, tx = _model(), optax.sgd(1.0)
  state = steps.create_train_state(model, tx, jax.random.key(0), MAX_LEN)
  option = next(iter(compiler_options.CPU_LIBRARY_DOTS_ONLY))
  launcher = _launcher(model, tx, {option: "NOT_A_FUSION_TYPE"})
  with pytest.raises(Exception, match="not a valid enum value"):
    launcher.train_step(
        launcher.put_state(state),
        launcher.put_batch(_prefix_batch()),
        jax.random.key(1),
    )


# Two full compilations of a step at XLA's default optimisation level:
# slow. The default run checks the options reach the compiler (above).
@pytest.mark.slow
def test_a_step_compiled_with_the_options_makes_the_same_update():
  model, tx = _model(), optax.sgd(1.0)
  state = steps.create_train_state(model, tx, jax.random.key(0), MAX_LEN)
  batch, rng = _prefix_batch(), jax.random.key(1)
  step = steps.make_train_step(model, tx, loss="ce", num_items=NUM_ITEMS)
  launcher = _launcher(
      model, tx, compiler_options.train_step_options("prefix", "cpu")
  )
  optioned, optioned_metrics = launcher.train_step(
      launcher.put_state(state), launcher.put_batch(batch), rng
  )
  default, default_metrics = jax.jit(step)(state, batch, rng)
  np.testing.assert_allclose(
      optioned_metrics["loss"], default_metrics["loss"], rtol=1e-6
  )
  # The update against the independent reference (SGD with rate 1: params
  # minus the mean gradient), its targets spread over [B, L] at each row's
  # last real position.
  rows = np.arange(BATCH)
  spread = np.zeros((BATCH, MAX_LEN), np.int32)
  spread[rows, np.asarray(batch["positions"][:, 0])] = batch["targets"][:, 0]
  grads = reference_loss.global_mean_loss_grads(
      model, state.params, {"inputs": batch["inputs"], "targets": spread}
  )
  expected = jax.tree.map(lambda p, g: p - g, state.params, grads)
  for tree in (optioned.params, default.params):
    for got, want in zip(jax.tree.leaves(tree), jax.tree.leaves(expected)):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
