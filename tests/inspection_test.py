"""Tests of linrec_jax.analysis.inspection against the NumPy attention references."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linrec_jax.analysis import inspection
from linrec_jax.layers import attention
from linrec_jax.layers.config import EncoderConfig
from linrec_jax.models import SASRec
import reference_attention

MODES = [
    (name, causal)
    for name in sorted(attention.VARIANTS)
    for causal in (False, True)
    if not causal or name in attention.CAUSAL_VARIANTS
]
# Decay logits of the learned-decay variants (one per head).
THETA = np.array([-0.7, 2.5], np.float32)


def _learned(name):
  return (
      {'decay_logit': THETA} if name in attention.LEARNED_DECAY_VARIANTS else {}
  )


def _inputs(length=7):
  rng = np.random.default_rng(0)
  shape = (2, length, 2, 4)
  q, k, v = (
      (1.5 * rng.standard_normal(shape) - 0.3).astype(np.float32)
      for _ in range(3)
  )
  mask = np.arange(length)[None, :] < np.array([[length], [4]])
  return q, k, v, mask


@pytest.mark.parametrize('name, causal', MODES)
def test_weights_match_the_formula_and_the_attention(name, causal):
  q, k, v, mask = _inputs()
  weights = inspection.attention_weights(
      name, q, k, mask=mask, causal=causal, **_learned(name)
  )
  visible = reference_attention.np_visible(mask, q.shape[1], causal)
  expected = reference_attention.np_weights(
      name,
      q.astype(np.float64),
      k.astype(np.float64),
      visible,
      mask,
      **_learned(name),
  )
  real = mask[:, None, :, None]  # Rows of padded queries are not compared.
  np.testing.assert_allclose(
      np.where(real, weights, 0),
      np.where(real, expected, 0),
      rtol=1e-4,
      atol=1e-6,
  )
  out = attention.VARIANTS[name](
      q, k, v, mask=mask, causal=causal, **_learned(name)
  )
  mixed = jnp.einsum('BHLM,BMHF->BLHF', weights, v)
  np.testing.assert_allclose(
      np.where(mask[..., None, None], mixed, 0), out, rtol=1e-4, atol=1e-5
  )


def test_queries_and_keys_of_every_block():
  model = SASRec(
      20,
      EncoderConfig(
          max_len=6, hidden=8, layers=2, heads=2, ffn=16, attention='linrec'
      ),
  )
  inputs = jnp.array([[3, 4, 5, 0, 0, 0], [1, 2, 3, 4, 5, 6]], jnp.int32)
  params = model.init(jax.random.key(0), inputs)['params']
  blocks = inspection.layer_queries_and_keys(model, params, inputs)
  assert len(blocks) == 2
  for query, key in blocks:
    assert query.shape == key.shape == (2, 6, 2, 4)
  first = params['encoder']['block0']['attention']['query']
  embedded = model.apply(
      {'params': params}, inputs, method=lambda m, x: m.embed(x)
  )
  np.testing.assert_allclose(
      blocks[0][0].reshape(2, 6, 8),
      embedded @ first['kernel'] + first['bias'],
      rtol=1e-5,
      atol=1e-6,
  )


def test_unknown_variant_is_an_error():
  q, k, _, _ = _inputs()
  with pytest.raises(ValueError, match="unknown attention 'nope'"):
    inspection.attention_weights('nope', q, k)


def test_decay_logits_are_required_exactly_for_learned_decays():
  q, k, _, _ = _inputs()
  with pytest.raises(
      ValueError, match="'linrec_learned_decay' needs " 'decay_logit='
  ):
    inspection.attention_weights('linrec_learned_decay', q, k)
  with pytest.raises(ValueError, match="'linrec_decay' takes no decay_logit"):
    inspection.attention_weights('linrec_decay', q, k, decay_logit=THETA)


@pytest.mark.parametrize('name', ['linrec', 'linrec_learned_decay'])
def test_layer_decay_logits_are_the_blocks_parameters(name):
  model = SASRec(
      20,
      EncoderConfig(
          max_len=6, hidden=8, layers=2, heads=2, ffn=16, attention=name
      ),
  )
  params = model.init(jax.random.key(0), jnp.ones((1, 6), jnp.int32))
  params = params['params']
  got = inspection.layer_decay_logits(model, params)
  if name == 'linrec':
    assert got == [None, None]
    return
  assert len(got) == 2
  for index, theta in enumerate(got):
    np.testing.assert_array_equal(
        theta, params['encoder'][f'block{index}']['attention']['decay_logit']
    )


def test_focus_by_hand():
  # Row 0: keys 0..3 visible, weights 0.1, -0.1, 0.2, 0.6 (sum |w| = 1).
  # Row 1: only key 0 visible.
  weights = jnp.array([[[0.1, -0.1, 0.2, 0.6]], [[2.0, 5.0, 5.0, 5.0]]])
  visible = jnp.array([[True, True, True, True], [True, False, False, False]])
  stats = inspection.focus(weights, visible, recent=2)
  np.testing.assert_allclose(stats['recent_share'][:, 0], [0.8, 1.0])
  np.testing.assert_allclose(stats['top_share'][:, 0], [0.6, 1.0])
  np.testing.assert_allclose(stats['negative_share'][:, 0], [0.1, 0.0])
  np.testing.assert_allclose(
      stats['effective_keys'][:, 0], [1 / 0.42, 1.0], rtol=1e-6
  )
  np.testing.assert_allclose(stats['uniform_recent_share'][:, 0], [0.5, 1.0])


@pytest.mark.parametrize('attention_name', ['linrec', 'linrec_learned_decay'])
def test_attention_focus_script_on_a_saved_run(tmp_path, attention_name):
  # A saved toy run (random parameters), as experiments/recommend tests it.
  from experiments import attention_focus  # pylint: disable=g-import-not-at-top
  import recommend_test  # pylint: disable=g-import-not-at-top

  config = dataclasses.replace(recommend_test.CONFIG, attention=attention_name)
  data_dir = recommend_test._write_data(tmp_path / 'prepared')
  workdir = str(tmp_path / 'workdir')
  recommend_test._save_run(workdir, data_dir, config=config)
  blocks = attention_focus.run_focus(workdir, users=3, recent=2, batch_size=2)
  assert len(blocks) == recommend_test.CONFIG.layers
  for block in blocks:
    for name in (
        'recent_share',
        'top_share',
        'negative_share',
        'uniform_recent_share',
    ):
      assert 0.0 <= block[name] <= 1.0 + 1e-6, (name, block[name])
    assert block['effective_keys'] >= 1.0 - 1e-6
