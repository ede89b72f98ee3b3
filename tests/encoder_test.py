"""Tests for linrec_jax.layers.encoder and linrec_jax.layers.embeddings."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linrec_jax.constants import PAD_ID
from linrec_jax.layers import attention
from linrec_jax.layers import embeddings
from linrec_jax.layers import encoder
from linrec_jax.layers.config import EncoderConfig

B, L, D, H, F = 2, 6, 8, 2, 12
# Every (variant, causal) pair the attention module supports.
CASES = [(name, False) for name in sorted(attention.VARIANTS)] + [
    (name, True) for name in sorted(attention.CAUSAL_VARIANTS)
]


def _encoder(attention_name='linrec', causal=False, **kwargs):
  kwargs = {
      'layers': 2,
      'hidden': D,
      'heads': H,
      'ffn': F,
      'dropout': 0.0,
      **kwargs,
  }
  return encoder.Encoder(
      EncoderConfig(attention=attention_name, causal=causal, **kwargs)
  )


_erf = np.vectorize(math.erf)


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _inputs(length=L, seed=0):
  return jax.random.normal(jax.random.key(seed), (B, length, D))


def _num_params(variables):
  return sum(x.size for x in jax.tree.leaves(variables['params']))


@pytest.mark.parametrize('name,causal', CASES)
def test_shapes_and_finite_for_every_variant(name, causal):
  model = _encoder(name, causal)
  x = _inputs()
  mask = jnp.array([[True] * L, [True] * 3 + [False] * (L - 3)])
  variables = model.init(jax.random.key(1), x, mask)
  out = model.apply(variables, x, mask)
  assert out.shape == (B, L, D)
  assert np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize('pre_ln', [False, True])
def test_parameter_count_matches_formula(pre_ln):
  layers = 3
  model = _encoder(layers=layers, pre_ln=pre_ln)
  variables = model.init(jax.random.key(0), _inputs())
  qkvo = 4 * (D * D + D)
  ffn = (D * F + F) + (F * D + D)
  norms = 2 * (2 * D)
  final_norm = 2 * D if pre_ln else 0
  assert _num_params(variables) == layers * (qkvo + ffn + norms) + final_norm


def _param_paths(variables):
  return {
      jax.tree_util.keystr(path, simple=True, separator='/')
      for path, _ in jax.tree_util.tree_leaves_with_path(variables['params'])
  }


# One block's parameters, written out: what every variant without a learned
# decay has.
BLOCK_PATHS = {
    f'block0/{layer}/{name}'
    for layer, names in [
        ('attention/query', ('kernel', 'bias')),
        ('attention/key', ('kernel', 'bias')),
        ('attention/value', ('kernel', 'bias')),
        ('attention/out', ('kernel', 'bias')),
        ('ffn/dense_in', ('kernel', 'bias')),
        ('ffn/dense_out', ('kernel', 'bias')),
        ('norm0', ('scale', 'bias')),
        ('norm1', ('scale', 'bias')),
    ]
    for name in names
}


@pytest.mark.parametrize('name', sorted(attention.VARIANTS))
def test_only_learned_decay_variants_add_a_parameter(name):
  variables = _encoder(name, layers=1).init(jax.random.key(0), _inputs())
  learned = name in attention.LEARNED_DECAY_VARIANTS
  extra = {'block0/attention/decay_logit'} if learned else set()
  assert _param_paths(variables) == BLOCK_PATHS | extra
  if learned:
    theta = variables['params']['block0']['attention']['decay_logit']
    assert theta.dtype == jnp.float32
    # H = 2: 1 - g = 2^-2.75 and 2^-6.25 (`head_decays`), theta = logit(g).
    one_minus_g = 2.0 ** -np.array([2.75, 6.25])
    np.testing.assert_allclose(
        theta, np.log((1 - one_minus_g) / one_minus_g), rtol=1e-6
    )


@pytest.mark.parametrize(
    'name, causal',
    [
        ('linrec_learned_decay', True),
        ('linrec_learned_decay', False),
        ('softmax_learned_decay', True),
    ],
)
def test_gradient_reaches_the_decay_logits(name, causal):
  model = _encoder(name, causal)
  x = _inputs()
  mask = jnp.array([[True] * L, [True] * 4 + [False] * (L - 4)])
  variables = model.init(jax.random.key(5), x, mask)
  weights = jax.random.normal(jax.random.key(6), (B, L, D))
  loss = lambda p: jnp.sum(weights * model.apply({'params': p}, x, mask))
  grads = jax.grad(loss)(variables['params'])
  for block in ('block0', 'block1'):
    grad = np.asarray(grads[block]['attention']['decay_logit'])
    assert grad.shape == (H,)
    assert np.isfinite(grad).all() and (np.abs(grad) > 1e-6).all()


def _layer_norm(x, scale, bias, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def _reference_block(p, x, pre_ln, eps):
  """NumPy softmax block, no mask, written from the RecBole layer order."""
  dense = lambda name, h, sub='attention': (
      h @ p[sub][name]['kernel'] + p[sub][name]['bias']
  )
  norm = lambda i, h: _layer_norm(
      h, p[f'norm{i}']['scale'], p[f'norm{i}']['bias'], eps
  )

  def attend(h):
    q, k, v = (
        dense(n, h).reshape(B, L, H, D // H) for n in ('query', 'key', 'value')
    )
    scores = np.einsum('BLHK,BMHK->BHLM', q, k) / np.sqrt(D // H)
    weights = _softmax(scores)
    out = np.einsum('BHLM,BMHK->BLHK', weights, v).reshape(B, L, D)
    return dense('out', out)

  def feed(h):
    inner = dense('dense_in', h, 'ffn')
    inner = 0.5 * inner * (1 + _erf(inner / np.sqrt(2)))
    return dense('dense_out', inner, 'ffn')

  for i, sublayer in enumerate((attend, feed)):
    x = x + sublayer(norm(i, x)) if pre_ln else norm(i, x + sublayer(x))
  return x


@pytest.mark.parametrize('pre_ln', [False, True])
@pytest.mark.parametrize('scored', [None, ((0, 1), (L - 2, L - 1))])
def test_block_matches_numpy_reference(pre_ln, scored):
  """Whole, and computed at two positions per row (the rows of the whole)."""
  eps = 1e-5
  block = encoder.TransformerBlock(
      EncoderConfig(
          hidden=D,
          heads=H,
          ffn=F,
          attention='softmax',
          causal=False,
          dropout=0.0,
          ln_eps=eps,
          pre_ln=pre_ln,
      )
  )
  x = _inputs()
  variables = block.init(jax.random.key(2), x)
  params = jax.tree.map(np.asarray, variables['params'])
  want = _reference_block(params, np.asarray(x, np.float64), pre_ln, eps)
  if scored is None:
    got = block.apply(variables, x)
  else:
    positions = np.array(scored, np.int32)
    got = block.apply(variables, x, positions=positions)
    want = np.take_along_axis(want, positions[:, :, None], axis=1)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_default_activation_is_exact_gelu():
  x = jnp.linspace(-4.0, 4.0, 17)
  want = 0.5 * x * (1 + _erf(np.asarray(x) / np.sqrt(2)))
  np.testing.assert_allclose(encoder.ACTIVATIONS['gelu'](x), want, atol=1e-6)


def test_initialisation_is_official():
  variables = _encoder().init(jax.random.key(0), _inputs())
  attn = variables['params']['block0']['attention']['query']
  np.testing.assert_array_equal(attn['bias'], 0.0)
  kernels = np.concatenate(
      [
          np.ravel(x)
          for path, x in jax.tree_util.tree_leaves_with_path(
              variables['params']
          )
          if 'kernel' in jax.tree_util.keystr(path)
      ]
  )
  assert abs(kernels.std() - embeddings.INIT_STD) < 0.004


@pytest.mark.parametrize('name,causal', CASES)
@pytest.mark.parametrize('side', ['right', 'left'])
def test_real_states_ignore_amount_of_padding(name, causal, side):
  """Masked attention: adding padding leaves the real positions' states."""
  model = _encoder(name, causal)
  real = 4
  x = _inputs()
  variables = model.init(jax.random.key(3), x)
  short = model.apply(variables, x[:, :real], jnp.ones((B, real), bool))
  pad = jnp.full((B, L - real, D), 7.0)  # Junk at padded positions.
  if side == 'right':
    padded_x = jnp.concatenate([x[:, :real], pad], axis=1)
    mask = jnp.arange(L) < real
    real_slice = slice(0, real)
  else:
    padded_x = jnp.concatenate([pad, x[:, :real]], axis=1)
    mask = jnp.arange(L) >= L - real
    real_slice = slice(L - real, L)
  mask = jnp.broadcast_to(mask, (B, L))
  long = model.apply(variables, padded_x, mask)
  np.testing.assert_allclose(long[:, real_slice], short, atol=1e-5)
  assert np.isfinite(np.asarray(long)).all()


def test_official_unmasked_linrec_sees_padding():
  """mask_padding=False is the authors' LinRec: padding leaks in."""
  model = _encoder('linrec', mask_padding=False)
  x = _inputs()
  variables = model.init(jax.random.key(3), x)
  mask = jnp.broadcast_to(jnp.arange(L) < 4, (B, L))
  a = model.apply(variables, x, mask)
  b = model.apply(variables, x.at[:, 4:].set(3.0), mask)
  assert np.abs(np.asarray(a[:, :4] - b[:, :4])).max() > 1e-3


@pytest.mark.parametrize('name', sorted(attention.CAUSAL_VARIANTS))
def test_causal_encoder_ignores_the_future(name):
  model = _encoder(name, causal=True)
  x = _inputs()
  variables = model.init(jax.random.key(4), x)
  t = 2
  changed = x.at[:, t + 1 :].set(_inputs(seed=9)[:, t + 1 :])
  a = model.apply(variables, x)
  b = model.apply(variables, changed)
  np.testing.assert_allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6)
  assert np.abs(np.asarray(a[:, t + 1 :] - b[:, t + 1 :])).max() > 1e-3


def test_dropout_only_when_not_deterministic():
  model = _encoder(dropout=0.5)
  x = _inputs()
  variables = model.init(jax.random.key(0), x)
  base = model.apply(variables, x)
  rngs = lambda seed: {'dropout': jax.random.key(seed)}
  same = model.apply(variables, x, deterministic=True, rngs=rngs(1))
  np.testing.assert_array_equal(base, same)
  drop1 = model.apply(variables, x, deterministic=False, rngs=rngs(1))
  drop2 = model.apply(variables, x, deterministic=False, rngs=rngs(2))
  assert np.abs(np.asarray(drop1 - base)).max() > 1e-3
  assert np.abs(np.asarray(drop1 - drop2)).max() > 1e-3


@pytest.mark.parametrize(
    'kwargs,match',
    [
        ({'hidden': 10, 'heads': 3}, r'hidden \(10\) .* heads \(3\)'),
        ({'attention': 'nope'}, "unknown attention 'nope'.*linrec"),
        ({'attention': 'linrec_seqnorm', 'causal': True}, 'causal'),
        ({'activation': 'tanhh'}, 'unknown activation'),
    ],
)
def test_invalid_configuration_fails_at_construction(kwargs, match):
  kwargs = {'hidden': D, 'heads': H, 'ffn': F, **kwargs}
  with pytest.raises(ValueError, match=match):
    encoder.Encoder(EncoderConfig(layers=1, **kwargs))
  with pytest.raises(ValueError, match=match):
    encoder.TransformerBlock(EncoderConfig(**kwargs))


def test_sequence_embedding_zeroes_padding_and_uses_absolute_positions():
  embed = embeddings.SequenceEmbedding(
      vocab_size=5,
      config=EncoderConfig(max_len=8, hidden=D, heads=H, dropout=0.0),
  )
  inputs = jnp.array([[1, 2, PAD_ID, PAD_ID, PAD_ID]] * B, jnp.int32)
  variables = embed.init(jax.random.key(0), inputs)
  params = variables['params']
  base = embed.apply(variables, inputs)
  assert base.shape == (B, 5, D)
  # Row PAD_ID and position rows >= L never reach the output.
  edited = jax.tree.map(lambda x: x, params)
  noise = jax.random.normal(jax.random.key(1), (4, D))
  table = params['items']['embedding']
  edited['items']['embedding'] = table.at[PAD_ID].add(noise[0])
  edited['positions'] = params['positions'].at[5:].add(noise[1:])
  np.testing.assert_array_equal(embed.apply({'params': edited}, inputs), base)
  # Position i is row i of the table, whatever the padding.
  want = _layer_norm(
      np.asarray(params['positions'][4]), 1.0, 0.0, embed.config.ln_eps
  )
  np.testing.assert_allclose(base[0, 4], want, atol=1e-5)
  with pytest.raises(ValueError, match='max_len'):
    embed.apply(variables, jnp.ones((B, 9), jnp.int32))
