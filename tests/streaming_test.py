"""Tests for linrec_jax.serving.streaming: recurrent updates equal the full pass."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linrec_jax import models
from linrec_jax.constants import PAD_ID
from linrec_jax.layers.encoder import Encoder
from linrec_jax.serving import streaming

NUM_ITEMS, MAX_LEN = 30, 8
TINY = dict(max_len=MAX_LEN, hidden=16, heads=2, layers=2, ffn=32, dropout=0.0)
TOL = dict(rtol=1e-5, atol=1e-5)
BATCH = 4


def _model(**kwargs):
  return models.SASRec(NUM_ITEMS, models.EncoderConfig(**{**TINY, **kwargs}))


def _params(model, seed=0):
  """Random parameters far from the init, so attention matters."""
  params = model.init(
      jax.random.key(seed), jnp.zeros((1, model.config.max_len), jnp.int32)
  )['params']
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  return jax.tree.unflatten(
      treedef,
      [
          leaf + 0.3 * jax.random.normal(key, leaf.shape)
          for leaf, key in zip(leaves, keys)
      ],
  )


MODEL = _model()
PARAMS = _params(MODEL)
DECAY_MODEL = _model(attention='linrec_decay')
LEARNED_MODEL = _model(attention='linrec_learned_decay')


def _with_decay_logits(params, logits):
  """A copy of `params` with `logits[block]` as that block's decay logits."""
  params = jax.tree.map(lambda x: x, params)
  for block, theta in logits.items():
    params['encoder'][block]['attention']['decay_logit'] = jnp.asarray(
        theta, jnp.float32
    )
  return params


# Different learned decays in each layer and head, far from the initial
# logits (about 1.75 and 4.32): g = 0.38, 0.95 in block0, 0.82, 0.27 in
# block1.
LEARNED_PARAMS = _with_decay_logits(
    _params(LEARNED_MODEL), {'block0': [-0.5, 3.0], 'block1': [1.5, -1.0]}
)
# linrec_decay has the same parameter tree as linrec: its decay is fixed.
MODELS = pytest.mark.parametrize(
    'model, params',
    [(MODEL, PARAMS), (DECAY_MODEL, PARAMS), (LEARNED_MODEL, LEARNED_PARAMS)],
    ids=['linrec', 'linrec_decay', 'linrec_learned_decay'],
)


def _histories(lengths, width, seed=2):
  """int32 `[B, width]` right-padded random histories."""
  lengths = np.asarray(lengths)
  rng = np.random.default_rng(seed)
  items = rng.integers(1, NUM_ITEMS + 1, (len(lengths), width))
  return np.where(np.arange(width) < lengths[:, None], items, PAD_ID).astype(
      np.int32
  )


@functools.partial(jax.jit, static_argnums=0)
def _full_scores(model, params, inputs, lengths):
  """Scores of the full forward pass at each row's last real position."""
  states = model.apply({'params': params}, inputs)
  last = states[jnp.arange(inputs.shape[0]), lengths - 1]
  return model.apply({'params': params}, last, method='logits')


def _stream(model, params, inputs):
  """Feeds `inputs` `[B, T]` column by column with `update`."""
  state = streaming.init_state(params, inputs.shape[0], model=model)
  for t in range(inputs.shape[1]):
    state = streaming.update(params, state, jnp.asarray(inputs[:, t]))
  return state


@MODELS
def test_item_by_item_equals_full_pass_at_several_lengths(model, params):
  inputs = _histories([MAX_LEN] * BATCH, MAX_LEN)
  state = streaming.init_state(params, BATCH, model=model)
  for t in range(MAX_LEN):
    state = streaming.update(params, state, jnp.asarray(inputs[:, t]))
    length = t + 1
    if length in (1, 3, MAX_LEN):
      # No padding: the full pass sees exactly the `length` items.
      expected = _full_scores(
          model, params, inputs[:, :length], np.full(BATCH, length)
      )
      np.testing.assert_allclose(
          streaming.scores(params, state), expected, **TOL
      )
      np.testing.assert_array_equal(state.length, length)


@pytest.mark.parametrize(
    'variant',
    [
        dict(),
        dict(pre_ln=True),
        dict(mask_padding=False),
    ],
    ids=['post_ln', 'pre_ln', 'unmasked'],
)
def test_padding_updates_leave_state_unchanged_and_match_padded_pass(variant):
  model = _model(**variant)
  params = PARAMS if not variant else _params(model)
  lengths = np.array([2, 5, MAX_LEN, 1])
  inputs = _histories(lengths, MAX_LEN)
  state = streaming.init_state(params, BATCH, model=model)
  for t in range(MAX_LEN):
    before = state
    state = streaming.update(params, state, jnp.asarray(inputs[:, t]))
    padded = inputs[:, t] == PAD_ID
    for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(state)):
      axis = 1 if old.ndim == 5 else 0  # kv is [layers, B, ...].
      np.testing.assert_array_equal(
          np.compress(padded, old, axis), np.compress(padded, new, axis)
      )
  np.testing.assert_array_equal(state.length, lengths)
  expected = _full_scores(model, params, inputs, lengths)
  np.testing.assert_allclose(streaming.scores(params, state), expected, **TOL)


@MODELS
def test_feed_skips_padding_anywhere(model, params):
  lengths = np.array([3, 6, MAX_LEN, 1])
  right = _histories(lengths, MAX_LEN)
  left = np.stack([np.roll(row, MAX_LEN - n) for row, n in zip(right, lengths)])
  holes = right.copy()
  holes[0] = [0, right[0, 0], 0, right[0, 1], right[0, 2], 0, 0, 0]
  empty = streaming.init_state(params, BATCH, model=model)
  expected = _full_scores(model, params, right, lengths)
  for inputs in (right, left, holes):
    state = streaming.feed(params, empty, jnp.asarray(inputs))
    np.testing.assert_array_equal(state.length, lengths)
    np.testing.assert_allclose(streaming.scores(params, state), expected, **TOL)


def test_learned_decay_is_read_from_each_layer():
  # Guards the learned-decay equivalence above: the scores follow the
  # parameters, so equal scores mean the same decays were used.
  inputs = _histories([MAX_LEN] * BATCH, MAX_LEN)
  empty = streaming.init_state(LEARNED_PARAMS, BATCH, model=LEARNED_MODEL)
  base = streaming.scores(
      LEARNED_PARAMS, streaming.feed(LEARNED_PARAMS, empty, inputs)
  )
  for block in ('block0', 'block1'):
    theta = LEARNED_PARAMS['encoder'][block]['attention']['decay_logit']
    params = _with_decay_logits(LEARNED_PARAMS, {block: theta + 2.0})
    moved = streaming.scores(params, streaming.feed(params, empty, inputs))
    np.testing.assert_allclose(
        moved,
        _full_scores(LEARNED_MODEL, params, inputs, np.full(BATCH, MAX_LEN)),
        **TOL,
    )
    assert np.abs(np.asarray(moved) - np.asarray(base)).max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize('attention', streaming.RECURRENT_VARIANTS)
def test_equals_full_pass_across_scan_chunks(attention):
  # 80 positions span two chunks of the full pass's causal scan (64 each).
  model = _model(max_len=80, hidden=8, layers=1, attention=attention)
  params = _params(model)
  lengths = np.array([80, 65, 7])
  inputs = _histories(lengths, 80)
  state = streaming.feed(
      params, streaming.init_state(params, 3, model=model), inputs
  )
  expected = _full_scores(model, params, inputs, lengths)
  np.testing.assert_allclose(streaming.scores(params, state), expected, **TOL)


def test_scores_depend_on_earlier_items():
  # Guards the tolerance above: the attention path visibly moves the scores.
  inputs = np.array([[1, 2, 3], [5, 2, 3], [1, 9, 3], [1, 2, 3]], np.int32)
  got = np.asarray(streaming.scores(PARAMS, _stream(MODEL, PARAMS, inputs)))
  assert np.abs(got[0] - got[1]).max() > 1e-2
  assert np.abs(got[0] - got[2]).max() > 1e-2
  np.testing.assert_array_equal(got[0], got[3])


@MODELS
def test_state_size_does_not_grow(model, params):
  state = streaming.init_state(params, BATCH, model=model)
  shapes = jax.tree.map(lambda x: (x.shape, x.dtype), state)
  inputs = _histories([3 * MAX_LEN] * BATCH, 3 * MAX_LEN)
  for t in range(3 * MAX_LEN):
    state = streaming.update(params, state, jnp.asarray(inputs[:, t]))
    if t + 1 in (1, MAX_LEN, 3 * MAX_LEN):
      assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == shapes


@functools.partial(jax.jit, static_argnums=0)
def _clamped_reference(model, params, inputs):
  """A causal pass over the whole history with positions clamped."""
  embed = params['embed']
  length = inputs.shape[1]
  positions = jnp.minimum(jnp.arange(length), model.config.max_len - 1)
  x = embed['items']['embedding'][inputs] + embed['positions'][positions]
  x = nn.LayerNorm(epsilon=model.config.ln_eps).apply(
      {'params': embed['norm']}, x
  )
  encoder = Encoder(
      dataclasses.replace(
          model.config, attention='linrec', causal=True, dropout=0.0
      )
  )
  states = encoder.apply({'params': params['encoder']}, x)
  return model.apply({'params': params}, states[:, -1], method='logits')


def test_beyond_max_len_clamps_positions_and_keeps_whole_history():
  length = MAX_LEN + 5
  inputs = _histories([length] * BATCH, length)
  state = _stream(MODEL, PARAMS, inputs)
  np.testing.assert_array_equal(state.length, length)
  np.testing.assert_array_equal(streaming.beyond_max_len(PARAMS, state), True)
  got = streaming.scores(PARAMS, state)
  np.testing.assert_allclose(
      got, _clamped_reference(MODEL, PARAMS, inputs), **TOL
  )
  # The documented difference: not the full model on the last max_len items.
  window = _full_scores(
      MODEL, PARAMS, inputs[:, -MAX_LEN:], np.full(BATCH, MAX_LEN)
  )
  assert np.abs(np.asarray(got) - np.asarray(window)).max() > 1e-2


def test_empty_users_score_zero():
  state = streaming.init_state(PARAMS, BATCH, model=MODEL)
  state = streaming.update(PARAMS, state, jnp.array([PAD_ID, 4, PAD_ID, 1]))
  got = np.asarray(streaming.scores(PARAMS, state))
  assert got.shape == (BATCH, NUM_ITEMS + 1)
  np.testing.assert_array_equal(got[0], 0.0)
  assert np.abs(got[1]).max() > 0
  np.testing.assert_array_equal(streaming.beyond_max_len(PARAMS, state), False)


@pytest.mark.parametrize(
    'model',
    [
        _model(attention='softmax'),
        _model(attention='linrec_mean'),
        _model(causal=False),
        models.BERT4Rec(
            NUM_ITEMS,
            models.EncoderConfig(
                causal=False, max_len=MAX_LEN, hidden=16, heads=2, ffn=32
            ),
        ),
    ],
    ids=['softmax', 'linrec_mean', 'bidirectional', 'bert4rec'],
)
def test_rejects_models_without_recurrent_form(model):
  params = model.init(jax.random.key(0), jnp.zeros((1, MAX_LEN), jnp.int32))
  with pytest.raises(ValueError, match='streaming needs'):
    streaming.init_state(params['params'], 1, model=model)


def test_rejects_params_of_another_model():
  with pytest.raises(ValueError, match='do not fit'):
    streaming.init_state(PARAMS, 1, model=_model(layers=1))
  with pytest.raises(
      ValueError, match='do not fit.*decay_logit has shape None'
  ):
    streaming.init_state(PARAMS, 1, model=LEARNED_MODEL)
  with pytest.raises(
      ValueError,
      match=r'decay_logit has shape \(2,\); '
      r'linrec_learned_decay needs \(4,\)',
  ):
    streaming.init_state(
        LEARNED_PARAMS,
        1,
        model=_model(attention='linrec_learned_decay', heads=4),
    )


def test_jit_batched_update_compiles_once():
  state = streaming.init_state(PARAMS, BATCH, model=MODEL)
  state = streaming.update(PARAMS, state, jnp.ones((BATCH,), jnp.int32))
  before = streaming.update._cache_size()
  for item in range(2, 6):
    state = streaming.update(PARAMS, state, jnp.full((BATCH,), item, jnp.int32))
  assert streaming.update._cache_size() == before
