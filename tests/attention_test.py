"""Tests for linrec_jax.layers.attention against independent NumPy versions."""

import functools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from linrec_jax.layers import attention
import reference_attention

BATCH, HEADS, HEAD_DIM = 2, 2, 4
CHUNK = 4  # Small, so the causal scan crosses several chunks.
TOL = 1e-5

VARIANT_MODES = [
    (name, causal)
    for name in sorted(attention.VARIANTS)
    for causal in (False, True)
    if not causal or name in attention.CAUSAL_VARIANTS
]
CHUNKED = (
    'linrec',
    'linear',
    'linrec_mean',
    'linrec_decay',
    'efficient',
    'linrec_learned_decay',
)
LEARNED = sorted(attention.LEARNED_DECAY_VARIANTS)
# Decay logits of the learned variants in the shared tests, one per head
# (HEADS = 2): g = sigmoid(theta) = 0.332 and 0.924, away from the initial
# values so that they test the argument.
THETA = np.array([-0.7, 2.5], np.float32)


def _learned(name, theta=THETA):
  return {'decay_logit': theta} if name in LEARNED else {}


def _eager(name, q, k, v, mask=None, causal=False, chunk_size=CHUNK):
  extra = {'chunk_size': chunk_size} if name in CHUNKED else {}
  fn = attention.VARIANTS[name]
  return fn(q, k, v, mask=mask, causal=causal, **extra, **_learned(name))


def _reference(name, q, k, v, **kwargs):
  return reference_attention.np_attention(
      name, q, k, v, **kwargs, **_learned(name)
  )


# Jitted: one compile per test instead of one per primitive and shape.
_call = jax.jit(_eager, static_argnames=('name', 'causal', 'chunk_size'))


def _output_and_gradients(fn, *args):
  """`fn(*args)` and the gradients of `sum(fn(*args) ** 2)`, one program."""

  def both(*args):
    out, pullback = jax.vjp(fn, *args)
    return out, pullback(2 * out)

  return jax.jit(both)(*args)


def _inputs(seed, length, batch=BATCH, dim=HEAD_DIM, dtype=np.float32):
  rng = np.random.default_rng(seed)
  shape = (batch, length, HEADS, dim)
  # Shifted and scaled so that many entries are clearly negative.
  return tuple(
      (1.5 * rng.standard_normal(shape) - 0.3).astype(dtype) for _ in range(3)
  )


def _assert_close(actual, expected, tol=TOL):
  """Max-norm relative error of `actual` against `expected` is <= tol."""
  actual = np.asarray(actual, np.float64)
  expected = np.asarray(expected, np.float64)
  assert actual.shape == expected.shape
  scale = max(np.abs(expected).max(), 1e-30)
  assert np.abs(actual - expected).max() / scale <= tol


def test_registries():
  assert set(attention.VARIANTS) == {
      'softmax',
      'linrec',
      'linear',
      'efficient',
      'linrec_seqnorm',
      'linrec_mean',
      'linrec_decay',
      'softmax_decay',
      'linrec_learned_decay',
      'softmax_learned_decay',
  }
  assert attention.CAUSAL_VARIANTS == {
      'softmax',
      'linrec',
      'linear',
      'linrec_mean',
      'linrec_decay',
      'softmax_decay',
      'efficient',
      'linrec_learned_decay',
      'softmax_learned_decay',
  }
  assert attention.LEARNED_DECAY_VARIANTS == {
      'linrec_learned_decay',
      'softmax_learned_decay',
  }


def test_head_decays_span_the_latest_items_to_the_whole_history():
  half_lives = np.log(0.5) / np.log(np.asarray(attention.head_decays(4)))
  # 1 - g = 2^-1.875, 2^-3.625, 2^-5.375, 2^-7.125, by hand.
  np.testing.assert_allclose(
      half_lives, [2.178, 8.200, 28.42, 96.41], rtol=1e-3
  )
  np.testing.assert_allclose(attention.head_decays(1), [1 - 2**-4.5], rtol=1e-6)


@pytest.mark.parametrize('name', ['linrec_decay', 'softmax_decay'])
@pytest.mark.parametrize('causal', [False, True])
def test_given_decay_matches_numpy_reference(name, causal):
  q, k, v = _inputs(3, 11)
  mask = np.arange(11)[None, :] < np.array([[11], [7]])
  decay = np.array([0.9, 0.3], np.float32)  # One per head (HEADS = 2).
  extra = {'chunk_size': CHUNK} if name in CHUNKED else {}
  fn = functools.partial(
      attention.VARIANTS[name], mask=mask, causal=causal, **extra
  )
  _assert_close(
      jax.jit(fn)(q, k, v, decay=decay),
      reference_attention.np_attention(
          name, q, k, v, mask=mask, causal=causal, decay=decay
      ),
  )


@pytest.mark.parametrize(
    'name, plain', [('linrec_decay', 'linrec'), ('softmax_decay', 'softmax')]
)
@pytest.mark.parametrize('causal', [False, True])
def test_unit_decay_is_the_plain_variant(name, plain, causal):
  q, k, v = _inputs(4, 9)
  ones = np.ones(HEADS, np.float32)
  decayed = jax.jit(functools.partial(attention.VARIANTS[name], causal=causal))
  _assert_close(
      decayed(q, k, v, decay=ones), _call(plain, q, k, v, causal=causal)
  )


@pytest.mark.parametrize('name', ['linrec_decay', 'softmax_decay'])
def test_decay_of_the_wrong_shape_raises(name):
  q, k, v = _inputs(0, 4)
  with pytest.raises(ValueError, match=r'decay must have shape \[heads\]'):
    attention.VARIANTS[name](q, k, v, decay=np.ones(HEADS + 1))


def test_decay_logits_start_at_the_fixed_decays():
  theta = np.asarray(attention.decay_logits(4), np.float64)
  one_minus_g = 2.0 ** -np.array([1.875, 3.625, 5.375, 7.125])  # By hand.
  np.testing.assert_allclose(
      theta, np.log((1 - one_minus_g) / one_minus_g), rtol=1e-6
  )
  np.testing.assert_allclose(
      theta, [0.98134, 2.42813, 3.70127, 4.93148], atol=1e-5
  )
  np.testing.assert_allclose(
      attention.learned_decays(theta), 1 - one_minus_g, rtol=1e-6
  )
  np.testing.assert_allclose(
      reference_attention.np_sigmoid(attention.decay_logits(3)),
      attention.head_decays(3),
      rtol=1e-6,
  )


@pytest.mark.parametrize('causal', [False, True])
def test_learned_decay_at_its_initial_logits_is_linrec_decay(causal):
  q, k, v = _inputs(5, 10)
  mask = np.arange(10)[None, :] < np.array([[10], [6]])
  start = attention.decay_logits(HEADS)
  _assert_close(
      attention.linrec_learned_decay(
          q, k, v, mask=mask, causal=causal, chunk_size=CHUNK, decay_logit=start
      ),
      reference_attention.np_attention(
          'linrec_decay', q, k, v, mask=mask, causal=causal
      ),
  )


@pytest.mark.parametrize('name', LEARNED)
def test_learned_decay_needs_logits_of_shape_heads(name):
  q, k, v = _inputs(0, 4)
  with pytest.raises(ValueError, match=f'{name} needs decay_logit='):
    attention.VARIANTS[name](q, k, v)
  with pytest.raises(
      ValueError, match=r'decay_logit must have shape \[heads\]'
  ):
    attention.VARIANTS[name](q, k, v, decay_logit=np.zeros(HEADS + 1))


def test_learned_decays_stay_inside_zero_one():
  theta = np.array([-80.0, -20.0, -1.0, 0.0, 3.0, 15.0], np.float32)
  g = np.asarray(attention.learned_decays(theta))
  assert g.dtype == np.float32
  assert (g > 0).all() and (g < 1).all()
  np.testing.assert_allclose(
      g, reference_attention.np_sigmoid(theta), rtol=1e-6
  )


@pytest.mark.parametrize('name', LEARNED)
@pytest.mark.parametrize('causal', [False, True])
def test_extreme_logits_give_finite_limits(name, causal):
  # Head 0: theta = -1e4, g = 0, each query sees only its own key. Head 1:
  # theta = +1e4, g = 1, no decay. Both are the NumPy limits, with finite
  # gradients (theta -1e4 would give log g = -inf and NaN if g were formed).
  q, k, v = _inputs(6, 9)
  mask = np.arange(9)[None, :] < np.array([[9], [5]])
  theta = np.array([-1e4, 1e4], np.float32)
  fn = functools.partial(
      attention.VARIANTS[name],
      mask=mask,
      causal=causal,
      **({'chunk_size': CHUNK} if name in CHUNKED else {}),
  )
  out, grads = _output_and_gradients(
      lambda q, k, v, t: fn(q, k, v, decay_logit=t), q, k, v, theta
  )
  _assert_close(
      out,
      reference_attention.np_attention(
          name, q, k, v, mask=mask, causal=causal, decay_logit=theta
      ),
  )
  if name == 'softmax_learned_decay':  # All of head 0's weight on itself.
    np.testing.assert_allclose(
        np.asarray(out)[mask][:, 0], v[mask][:, 0], rtol=1e-6
    )
  for grad in grads:
    assert np.isfinite(grad).all()


@pytest.mark.parametrize('name', LEARNED)
@pytest.mark.parametrize('causal', [False, True])
def test_gradient_of_decay_logit_matches_numpy_finite_differences(name, causal):
  q, k, v = _inputs(7, 9)
  mask = np.arange(9)[None, :] < np.array([[9], [6]])
  weights = np.random.default_rng(8).standard_normal(v.shape)
  theta = np.array([0.4, 1.7])

  def np_loss(theta):
    return np.sum(
        weights
        * reference_attention.np_attention(
            name, q, k, v, mask=mask, causal=causal, decay_logit=theta
        )
    )

  step = 1e-5
  expected = np.array(
      [
          (np_loss(theta + step * e) - np_loss(theta - step * e)) / (2 * step)
          for e in np.eye(HEADS)
      ]
  )
  with jax.enable_x64(True):
    extra = {'chunk_size': CHUNK} if name in CHUNKED else {}
    loss = lambda t: jnp.sum(
        weights
        * attention.VARIANTS[name](
            q.astype(np.float64),
            k.astype(np.float64),
            v.astype(np.float64),
            mask=mask,
            causal=causal,
            decay_logit=t,
            **extra,
        )
    )
    got = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(theta)))
  assert np.isfinite(got).all() and (np.abs(got) > 1e-3).all()
  np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize('length, dim', [(5, 4), (9, 8), (13, 3)])
def test_linrec_equals_quadratic_form(length, dim):
  q, k, v = _inputs(0, length, dim=dim)
  assert (q < 0).mean() > 0.3
  unit_q = reference_attention.np_unit(
      reference_attention.np_elu(q.astype(np.float64)), -1
  )
  unit_k = reference_attention.np_unit(
      reference_attention.np_elu(k.astype(np.float64)), -1
  )
  scores = np.einsum('blhd,bmhd->bhlm', unit_q, unit_k) / np.sqrt(dim)
  expected = np.einsum('bhlm,bmhd->blhd', scores, v)
  out = attention.linrec(q, k, v)
  assert out.dtype == jnp.float32
  _assert_close(out, expected)


@pytest.mark.parametrize('name, causal', VARIANT_MODES)
@pytest.mark.parametrize('length', [8, 11])  # A multiple of CHUNK and not.
def test_matches_numpy_reference(name, causal, length):
  q, k, v = _inputs(1, length)
  _assert_close(
      _call(name, q, k, v, causal=causal),
      _reference(name, q, k, v, causal=causal),
  )


@pytest.mark.parametrize('name, causal', VARIANT_MODES)
def test_matches_numpy_reference_with_mask(name, causal):
  q, k, v = _inputs(2, 7)
  mask = np.array([[1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1]], bool)
  _assert_close(
      _call(name, q, k, v, mask=mask, causal=causal),
      _reference(name, q, k, v, mask=mask, causal=causal),
  )


@pytest.mark.parametrize('chunk_size', [1, 3, 4, 64])
@pytest.mark.parametrize('name', CHUNKED)
def test_causal_chunk_size_does_not_change_result(name, chunk_size):
  q, k, v = _inputs(3, 10)
  _assert_close(
      _call(name, q, k, v, causal=True, chunk_size=chunk_size),
      _reference(name, q, k, v, causal=True),
  )


def _pad(x, num_pad, left, fill):
  """Pads [B, L, ...] with `fill` rows at the start or end of L."""
  widths = [(0, 0)] * x.ndim
  widths[1] = (num_pad, 0) if left else (0, num_pad)
  padded = np.pad(x, widths)
  rows = slice(0, num_pad) if left else slice(x.shape[1], None)
  padded[:, rows] = fill[:, :num_pad] if fill is not None else 0
  return padded


@pytest.mark.parametrize('name, causal', VARIANT_MODES)
@pytest.mark.parametrize('left', [False, True])
@pytest.mark.parametrize('num_pad', [0, 1, 6])
def test_padding_does_not_change_real_outputs(name, causal, left, num_pad):
  length = 6
  q, k, v = _inputs(4, length)
  expected = _call(name, q, k, v, causal=causal)
  mask = _pad(np.ones((BATCH, length), bool), num_pad, left, None)
  real = slice(num_pad, None) if left else slice(0, length)
  outs = []
  for seed in (5, 6):  # Two different garbage fills of the padding.
    garbage = _inputs(seed, num_pad)
    padded = [_pad(x, num_pad, left, 5 * g) for x, g in zip((q, k, v), garbage)]
    outs.append(np.asarray(_call(name, *padded, mask=mask, causal=causal)))
    _assert_close(outs[-1][:, real], expected)
  np.testing.assert_array_equal(outs[0], outs[1])
  np.testing.assert_array_equal(outs[0][~mask], 0)


@pytest.mark.parametrize('name', sorted(attention.CAUSAL_VARIANTS))
@pytest.mark.parametrize('t', [0, 3, 8])
def test_causal_ignores_the_future(name, t):
  q, k, v = _inputs(7, 11)
  changed = [x.copy() for x in (q, k, v)]
  for x, new in zip(changed, _inputs(8, 11)):
    x[:, t + 1 :] = new[:, t + 1 :]
  before = _call(name, q, k, v, causal=True)[:, : t + 1]
  after = _call(name, *changed, causal=True)[:, : t + 1]
  np.testing.assert_allclose(before, after, rtol=0, atol=1e-6)


@pytest.mark.parametrize('name, causal', VARIANT_MODES)
def test_fully_masked_row_returns_zeros(name, causal):
  q, k, v = _inputs(9, 5)
  mask = np.array([[0] * 5, [1] * 5], bool)
  out, grads = _output_and_gradients(
      functools.partial(_eager, name, mask=mask, causal=causal), q, k, v
  )
  np.testing.assert_array_equal(out[0], 0)
  assert np.isfinite(out).all()
  for grad in grads:
    assert np.isfinite(grad).all()


@pytest.mark.parametrize('name', ['linrec_seqnorm'])
def test_non_causal_variants_raise_on_causal(name):
  q, k, v = _inputs(10, 5)
  with pytest.raises(ValueError, match='causal'):
    attention.VARIANTS[name](q, k, v, causal=True)


def test_rejects_bad_shapes_and_chunk_size():
  q, k, v = _inputs(11, 5)
  with pytest.raises(ValueError, match='mask'):
    attention.linrec(q, k, v, mask=np.ones((BATCH, 4), bool))
  with pytest.raises(ValueError, match='same shape'):
    attention.softmax(q, k[:, :4], v)
  with pytest.raises(ValueError, match='chunk_size'):
    attention.linrec(q, k, v, causal=True, chunk_size=0)


@pytest.mark.parametrize('name, causal', VARIANT_MODES)
def test_gradients(name, causal):
  with jax.enable_x64(True):
    q, k, v = _inputs(12, 6, batch=1, dim=3, dtype=np.float64)
    mask = np.array([[0, 1, 1, 1, 1, 0]], bool)
    fn = functools.partial(_call, name, mask=mask, causal=causal)
    jax.test_util.check_grads(fn, (q, k, v), order=1, modes=('rev',))


@pytest.mark.parametrize('name, causal', VARIANT_MODES)
def test_jit_equals_eager(name, causal):
  q, k, v = _inputs(13, 9)
  mask = np.array([[1] * 9, [0, 0] + [1] * 7], bool)
  fn = functools.partial(_eager, name, causal=causal)
  _assert_close(jax.jit(fn)(q, k, v, mask=mask), fn(q, k, v, mask=mask))


@pytest.mark.parametrize('name, causal', VARIANT_MODES)
@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float32])
def test_preserves_dtype(name, causal, dtype):
  q, k, v = (jnp.asarray(x, dtype) for x in _inputs(14, 6))
  out = _call(name, q, k, v, causal=causal)
  assert out.dtype == dtype
  assert jnp.isfinite(out.astype(jnp.float32)).all()


def _intermediate_sizes(jaxpr):
  """Element counts of every value computed in `jaxpr` and its sub-jaxprs."""
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      yield int(np.prod(getattr(var.aval, 'shape', ())))
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        sub = getattr(sub, 'jaxpr', sub)
        if hasattr(sub, 'eqns'):
          yield from _intermediate_sizes(sub)


@pytest.mark.parametrize('name', CHUNKED)
def test_causal_memory_is_linear_in_length(name):
  length, dim, chunk = 64, 8, 8
  q, k, v = _inputs(15, length, dim=dim)

  def loss(q, k, v):
    return jnp.sum(_call(name, q, k, v, causal=True, chunk_size=chunk))

  jaxpr = jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 1, 2)))(q, k, v)
  largest = max(_intermediate_sizes(jaxpr.jaxpr))
  heads = BATCH * HEADS
  # No value is bigger than an input (with linear's extra column of ones),
  # far below the prefix states (B H L K K) or the scores (B H L L).
  assert largest <= heads * length * (dim + 1)
  assert largest * dim / 2 < heads * min(length * dim * dim, length * length)


QUERY_ROW_MODES = [
    (name, causal)
    for name, modes in sorted(attention.QUERY_ROW_VARIANTS.items())
    for causal in modes
]


@pytest.mark.parametrize('name, causal', QUERY_ROW_MODES)
@pytest.mark.parametrize('masked', [False, True])
def test_query_rows_are_the_numpy_rows(name, causal, masked):
  length = 9
  q, k, v = _inputs(31, length)
  mask = np.arange(length) < np.array([[9], [6]]) if masked else None
  # Rows in any order, repeated, and (row 1) one past the real items.
  positions = np.array([[8, 0, 3, 3], [5, 2, 6, 0]], np.int32)
  rows = np.take_along_axis(q, positions[:, :, None, None], axis=1)
  got = attention.VARIANTS[name](
      rows,
      k,
      v,
      mask=mask,
      causal=causal,
      query_positions=positions,
      **_learned(name),
  )
  whole = _reference(name, q, k, v, mask=mask, causal=causal)
  _assert_close(got, np.take_along_axis(whole, positions[:, :, None, None], 1))


@pytest.mark.parametrize('name, causal', QUERY_ROW_MODES)
def test_query_row_gradients_are_the_whole_outputs(name, causal):
  """Gradients (decay logits included) through the rows equal those
  through the whole output gathered at them."""
  length = 11
  q, k, v = _inputs(33, length)
  mask = np.arange(length) < np.array([[11], [7]])
  positions = np.array([[10, 4, 0], [6, 6, 2]], np.int32)
  extra = _learned(name)
  gather = lambda x: jnp.take_along_axis(x, positions[:, :, None, None], 1)
  weights = jnp.asarray(_inputs(34, 3)[0])

  def at_rows(q, k, v, extra):
    out = attention.VARIANTS[name](
        gather(q),
        k,
        v,
        mask=mask,
        causal=causal,
        query_positions=positions,
        **extra,
    )
    return jnp.sum(out * weights)

  def gathered(q, k, v, extra):
    out = attention.VARIANTS[name](q, k, v, mask=mask, causal=causal, **extra)
    return jnp.sum(gather(out) * weights)

  grads = [
      jax.jit(jax.grad(f, argnums=(0, 1, 2, 3)))(q, k, v, extra)
      for f in (at_rows, gathered)
  ]
  for got, want in zip(*map(jax.tree.leaves, grads), strict=True):
    _assert_close(got, want)


def test_query_rows_are_refused_where_they_do_not_apply():
  q, k, v = _inputs(32, 6)
  positions = np.zeros((BATCH, 2), np.int32)
  with pytest.raises(ValueError, match='query_positions'):
    attention.softmax(q[:, :3], k, v, query_positions=positions)
  rows = attention.MAX_SCORED_ROWS
  assert attention.attends_query_rows('softmax', True, 10 * rows)
  assert attention.attends_query_rows('linrec', False, 10 * rows)
  assert attention.attends_query_rows('linrec', True, rows)
  assert not attention.attends_query_rows('linrec', True, rows + 1)
  assert attention.attends_query_rows('linrec_decay', False, 1)
  assert not attention.attends_query_rows('linrec_decay', False, rows + 1)
  assert not attention.attends_query_rows('efficient', True, 1)
  assert not attention.attends_query_rows('softmax_decay', False, 1)
