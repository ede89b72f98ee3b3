"""Tests for linrec_jax.models (SASRec, BERT4Rec)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from linrec_jax import models
from linrec_jax.constants import PAD_ID
from linrec_jax.layers import attention

NUM_ITEMS, MAX_LEN, D, H, F = 12, 8, 8, 2, 16
TINY = {'max_len': MAX_LEN, 'hidden': D, 'heads': H, 'ffn': F}
SASREC_CASES = [(name, False) for name in sorted(attention.VARIANTS)] + [
    (name, True) for name in sorted(attention.CAUSAL_VARIANTS)
]
# One right-padded and one left-padded row.
INPUTS = jnp.array(
    [[3, 1, 4, 1, 5, 0, 0], [0, 0, 9, 2, 6, 5, 3]], dtype=jnp.int32
)


def _sasrec(name='linrec', causal=True, **kwargs):
  return models.SASRec(
      NUM_ITEMS,
      models.EncoderConfig(attention=name, causal=causal, **{**TINY, **kwargs}),
  )


def _bert4rec(name='linrec', **kwargs):
  return models.BERT4Rec(
      NUM_ITEMS,
      models.EncoderConfig(causal=False, attention=name, **{**TINY, **kwargs}),
  )


def _noise(shape, seed=7):
  # Not a constant: the embedding LayerNorm would remove a constant shift.
  return jax.random.normal(jax.random.key(seed), shape)


def _num_params(variables):
  return sum(x.size for x in jax.tree.leaves(variables['params']))


def _block_params(hidden, ffn):
  qkvo = 4 * (hidden * hidden + hidden)
  feed_forward = (hidden * ffn + ffn) + (ffn * hidden + hidden)
  two_norms = 2 * (2 * hidden)
  return qkvo + feed_forward + two_norms


def _check_states(model, variables, inputs=INPUTS):
  """Checks shapes and finiteness (also at padding); returns the states."""
  states = model.apply(variables, inputs)
  logits = model.apply(variables, states, method='logits')
  assert states.shape == inputs.shape + (D,)
  assert logits.shape == inputs.shape + (NUM_ITEMS + 1,)
  assert np.isfinite(np.asarray(states)).all()
  return states


def test_models_registry():
  assert models.MODELS == {
      'sasrec': models.SASRec,
      'bert4rec': models.BERT4Rec,
  }


def test_defaults_are_official():
  model = models.SASRec(5)
  got = (
      model.config.max_len,
      model.config.hidden,
      model.config.layers,
      model.config.heads,
      model.config.ffn,
      model.config.dropout,
      model.config.attention,
      model.config.causal,
      model.config.mask_padding,
      model.config.pre_ln,
      model.config.ln_eps,
      model.config.activation,
  )
  assert got == (
      200,
      128,
      2,
      8,
      256,
      0.2,
      'linrec',
      True,
      True,
      False,
      1e-12,
      'gelu',
  )
  assert hash(model) == hash(models.SASRec(5))
  assert models.BERT4Rec(5).mask_token == 6


@pytest.mark.parametrize('pre_ln', [False, True])
def test_sasrec_parameter_count(pre_ln):
  layers = 3
  model = _sasrec(layers=layers, pre_ln=pre_ln)
  variables = model.init(jax.random.key(0), INPUTS)
  embedding = (NUM_ITEMS + 1) * D + MAX_LEN * D + 2 * D  # items, pos, LN
  final_norm = 2 * D if pre_ln else 0
  want = embedding + layers * _block_params(D, F) + final_norm
  assert _num_params(variables) == want


def test_bert4rec_parameter_count():
  layers = 2
  variables = _bert4rec(layers=layers).init(jax.random.key(0), INPUTS)
  embedding = (NUM_ITEMS + 2) * D + MAX_LEN * D + 2 * D  # + mask token
  head = (D * D + D) + 2 * D + (NUM_ITEMS + 1)  # dense, LN, output bias
  want = embedding + layers * _block_params(D, F) + head
  assert _num_params(variables) == want


def _padding_case(model):
  """States of 4 real items, alone and followed by 3 padding ids.

  Also checks shapes and finiteness on `INPUTS` (left and right padding).
  """
  short = jnp.array([[3, 1, 4, 1], [9, 2, 6, 5]], jnp.int32)
  long = jnp.pad(short, ((0, 0), (0, 3)), constant_values=PAD_ID)
  variables = model.init(jax.random.key(1), long)
  _check_states(model, variables)
  return model.apply(variables, short), model.apply(variables, long)


@pytest.mark.parametrize('name,causal', SASREC_CASES)
def test_sasrec_shapes_and_right_padding_invariance(name, causal):
  short, long = _padding_case(_sasrec(name, causal))
  np.testing.assert_allclose(long[:, :4], short, atol=1e-5)


@pytest.mark.parametrize('name', sorted(attention.VARIANTS))
def test_bert4rec_shapes_and_right_padding_invariance(name):
  short, long = _padding_case(_bert4rec(name))
  np.testing.assert_allclose(long[:, :4], short, atol=1e-5)


def test_official_unmasked_bidirectional_linrec_sees_padding():
  short, long = _padding_case(_sasrec('linrec', False, mask_padding=False))
  assert np.abs(np.asarray(long[:, 3] - short[:, 3])).max() > 1e-3


def test_padding_row_of_the_table_is_unused():
  for model in (_sasrec(mask_padding=False), _bert4rec()):
    variables = model.init(jax.random.key(2), INPUTS)
    table = variables['params']['embed']['items']['embedding']
    edited = jax.tree.map(lambda x: x, variables)
    new_table = table.at[PAD_ID].add(_noise((D,)))
    edited['params']['embed']['items']['embedding'] = new_table
    np.testing.assert_array_equal(
        model.apply(edited, INPUTS), model.apply(variables, INPUTS)
    )


@pytest.mark.parametrize('name', sorted(attention.CAUSAL_VARIANTS))
def test_causal_sasrec_ignores_later_items(name):
  model = _sasrec(name, causal=True)
  inputs = jnp.array([[3, 1, 4, 1, 5, 9, 2]] * 2, jnp.int32)
  later = inputs.at[:, 4:].set(jnp.array([7, 8, PAD_ID]))
  variables = model.init(jax.random.key(3), inputs)
  a, b = model.apply(variables, inputs), model.apply(variables, later)
  np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-6)
  assert np.abs(np.asarray(a[:, 4:] - b[:, 4:])).max() > 1e-3


def test_sasrec_logits_are_tied():
  model = _sasrec()
  variables = model.init(jax.random.key(0), INPUTS)
  states = _check_states(model, variables)
  table = variables['params']['embed']['items']['embedding']
  np.testing.assert_array_equal(
      model.apply(variables, method='item_embeddings'), table
  )
  np.testing.assert_array_equal(
      model.apply(variables, method='item_bias'), np.zeros(NUM_ITEMS + 1)
  )
  np.testing.assert_allclose(
      model.apply(variables, states, method='logits'),
      np.einsum('BLD,VD->BLV', states, table),
      rtol=1e-5,
      atol=1e-6,
  )


def test_bert4rec_uses_mask_token_and_drops_its_column():
  model = _bert4rec()
  mask = model.mask_token
  assert mask == NUM_ITEMS + 1
  inputs = INPUTS.at[0, 2].set(mask)
  variables = model.init(jax.random.key(4), inputs)
  params = variables['params']
  table = params['embed']['items']['embedding']
  assert table.shape == (NUM_ITEMS + 2, D)
  states = model.apply(variables, inputs)

  def edit_row(row):
    edited = jax.tree.map(lambda x: x, variables)
    new_table = table.at[row].add(_noise((D,)))
    edited['params']['embed']['items']['embedding'] = new_table
    return model.apply(edited, inputs)

  assert np.abs(np.asarray(edit_row(mask) - states)).max() > 1e-3
  unused = 11  # An item id that appears nowhere in `inputs`.
  assert unused not in np.asarray(inputs)
  np.testing.assert_array_equal(edit_row(unused), states)
  bias = jnp.arange(NUM_ITEMS + 1, dtype=jnp.float32)
  edited = jax.tree.map(lambda x: x, variables)
  edited['params']['output_bias'] = bias
  logits = model.apply(edited, states, method='logits')
  assert logits.shape == (2, 7, NUM_ITEMS + 1)
  want = np.einsum('BLD,VD->BLV', states, table[: NUM_ITEMS + 1]) + bias
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(
      model.apply(edited, method='item_embeddings'), table[: NUM_ITEMS + 1]
  )
  np.testing.assert_array_equal(model.apply(edited, method='item_bias'), bias)


@pytest.mark.parametrize('make', [_sasrec, _bert4rec])
def test_jit_matches_eager_and_dropout_needs_training_mode(make):
  model = make(dropout=0.5)
  variables = model.init(jax.random.key(5), INPUTS)
  apply = jax.jit(model.apply, static_argnames='deterministic')
  rngs = lambda seed: {'dropout': jax.random.key(seed)}
  eager = model.apply(variables, INPUTS)
  np.testing.assert_allclose(apply(variables, INPUTS), eager, atol=1e-5)
  np.testing.assert_array_equal(
      model.apply(variables, INPUTS, deterministic=True, rngs=rngs(1)), eager
  )
  train = model.apply(variables, INPUTS, deterministic=False, rngs=rngs(1))
  np.testing.assert_allclose(
      apply(variables, INPUTS, deterministic=False, rngs=rngs(1)),
      train,
      atol=1e-5,
  )
  assert np.abs(np.asarray(train - eager)).max() > 1e-2


@pytest.mark.parametrize(
    'kwargs,match',
    [
        ({'hidden': 10, 'heads': 4}, r'hidden \(10\) .* heads \(4\)'),
        ({'attention': 'flash'}, "unknown attention 'flash'.*softmax"),
        ({'attention': 'linrec_seqnorm'}, 'does not support causal=True'),
    ],
)
def test_sasrec_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    models.SASRec(NUM_ITEMS, models.EncoderConfig(**kwargs))


def test_bert4rec_validation_and_non_causal_variants():
  with pytest.raises(ValueError, match=r'hidden \(6\) .* heads \(4\)'):
    models.BERT4Rec(
        NUM_ITEMS, models.EncoderConfig(causal=False, hidden=6, heads=4)
    )
  with pytest.raises(ValueError, match='unknown attention'):
    models.BERT4Rec(
        NUM_ITEMS, models.EncoderConfig(causal=False, attention='flash')
    )
  models.BERT4Rec(
      NUM_ITEMS, models.EncoderConfig(causal=False, attention='efficient')
  )
  models.SASRec(
      NUM_ITEMS, models.EncoderConfig(attention='efficient', causal=False)
  )


def _cross_entropy(logits, targets):
  """Mean full-softmax CE over non-padding targets; column PAD_ID masked."""
  logits = logits.at[..., PAD_ID].set(-1e9)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  weights = targets != PAD_ID
  return jnp.sum(nll * weights) / jnp.sum(weights)


def _train(model, inputs, targets, steps=100, learning_rate=1e-2):
  """Returns the full CE loss before and after `steps` Adam steps."""
  params = model.init(jax.random.key(0), inputs)['params']
  optimizer = optax.adam(learning_rate)

  def loss_fn(params):
    states = model.apply({'params': params}, inputs)
    logits = model.apply({'params': params}, states, method='logits')
    return _cross_entropy(logits, targets)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = optimizer.init(params)
  first = None
  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state)
    first = loss if first is None else first
  return float(first), float(jax.jit(loss_fn)(params))


def _sequences(num=4, length=8, num_items=20, seed=0):
  """Distinct-item sequences; every first item differs, so the next item
  is determined by the prefix and an all-position model can fit it."""
  rng = np.random.default_rng(seed)
  return np.stack(
      [
          rng.choice(np.arange(1, num_items + 1), length, replace=False)
          for _ in range(num)
      ]
  ).astype(np.int32)


def _first_items_distinct(seqs):
  return len(set(seqs[:, 0])) == len(seqs)


def test_sasrec_linrec_causal_overfits():
  seqs = _sequences()
  assert _first_items_distinct(seqs)
  seqs[0, -2:] = PAD_ID  # One right-padded sequence.
  inputs, targets = jnp.asarray(seqs[:, :-1]), jnp.asarray(seqs[:, 1:])
  model = models.SASRec(
      20,
      models.EncoderConfig(
          max_len=8, hidden=16, layers=1, heads=2, ffn=32, dropout=0.0
      ),
  )
  first, last = _train(model, inputs, targets)
  assert last < 0.1 * first, (first, last)


def test_bert4rec_overfits():
  seqs = _sequences()
  seqs[0, -2:] = PAD_ID
  model = models.BERT4Rec(
      20,
      models.EncoderConfig(
          causal=False,
          max_len=8,
          hidden=16,
          layers=1,
          heads=2,
          ffn=32,
          dropout=0.0,
      ),
  )
  cloze = np.zeros_like(seqs, dtype=bool)
  cloze[:, [1, 4]] = True  # Fixed masked positions (all real items).
  inputs = np.where(cloze, model.mask_token, seqs)
  targets = np.where(cloze, seqs, PAD_ID)
  first, last = _train(model, jnp.asarray(inputs), jnp.asarray(targets))
  assert last < 0.1 * first, (first, last)


# Real positions of both INPUTS rows, repeated and out of order.
SCORED = jnp.array([[4, 0, 2], [6, 6, 3]], dtype=jnp.int32)


def _check_scored_rows(model, seed, gradients):
  """States at SCORED (and, if `gradients`, the gradient of a scalar of
  them) are the same with the last block computed at those rows and with
  the whole output gathered there."""
  variables = model.init(jax.random.key(seed), INPUTS)
  weights = _noise(SCORED.shape + (D,))

  def at_rows(params):
    return model.apply({'params': params}, INPUTS, positions=SCORED)

  def gathered(params):
    states = model.apply({'params': params}, INPUTS)
    return jnp.take_along_axis(states, SCORED[:, :, None], axis=1)

  def states_and_gradient(f):
    """One compiled program: f's states and the gradient of
    `sum(states * weights)` (its pullback of `weights`), if asked for."""

    def run(params):
      if not gradients:
        return f(params), None
      states, pullback = jax.vjp(f, params)
      return states, pullback(weights)[0]

    return jax.jit(run)(variables['params'])

  (got, got_grads), (want, want_grads) = map(
      states_and_gradient, (at_rows, gathered)
  )
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  for got, want in zip(
      *map(jax.tree.leaves, (got_grads, want_grads)), strict=True
  ):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


# Gradients too for softmax and the linear forms the encoder computes at
# the rows (softmax and LinRec both ways, each pre- and post-LN; causal
# linrec_learned_decay, its decay logits included) and for one that gathers
# the whole attention output (efficient); states for every variant.
GRADIENT_CASES = {
    ('softmax', True),
    ('softmax', False),
    ('linrec', False),
    ('linrec', True),
    ('linrec_decay', True),
    ('linrec_learned_decay', True),
    ('efficient', True),
}
SCORED_CASES = [(name, causal, False) for name, causal in SASREC_CASES] + [
    ('softmax', True, True),
    ('linrec', False, True),
    ('linrec', True, True),
]


@pytest.mark.parametrize('name, causal, pre_ln', SCORED_CASES)
def test_sasrec_at_positions_equals_the_whole_output_there(
    name, causal, pre_ln
):
  _check_scored_rows(
      _sasrec(name, causal, pre_ln=pre_ln),
      seed=3,
      gradients=(name, causal) in GRADIENT_CASES,
  )


@pytest.mark.parametrize('name', ['softmax', 'linrec', 'linrec_decay'])
def test_bert4rec_at_positions_equals_the_whole_output_there(name):
  _check_scored_rows(_bert4rec(name), seed=4, gradients=name == 'softmax')
