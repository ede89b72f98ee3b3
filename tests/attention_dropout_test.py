"""Attention-weight dropout (RecBole's attn_dropout_prob) against NumPy."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linrec_jax.layers import attention
from linrec_jax.layers.encoder import MultiHeadAttention
from linrec_jax.models import SASRec
from linrec_jax.layers.config import EncoderConfig
from reference_attention import np_visible, np_weights

B, L, H, K = 2, 6, 2, 4


def _inputs(seed=0):
  q, k, v = np.random.default_rng(seed).normal(size=(3, B, L, H, K))
  mask = np.arange(L)[None] < np.array([[L], [4]])
  return q, k, v, mask


@pytest.mark.parametrize('name', ['softmax', 'softmax_decay'])
@pytest.mark.parametrize('causal', [False, True])
def test_weights_dropout_applies_to_the_normalised_weights(name, causal):
  q, k, v, mask = _inputs()
  keep = np.random.default_rng(1).random((B, H, L, L)) > 0.3
  dropped = lambda w: jnp.where(keep, w / 0.7, 0.0)
  out = attention.VARIANTS[name](
      jnp.asarray(q),
      jnp.asarray(k),
      jnp.asarray(v),
      mask=jnp.asarray(mask),
      causal=causal,
      weights_dropout=dropped,
  )
  # NumPy: the weights of the variant, then the same mask and scale.
  weights = np_weights(name, q, k, np_visible(mask, L, causal), mask)
  expected = np.einsum('bhlm,bmhd->blhd', np.where(keep, weights / 0.7, 0), v)
  expected = np.where(mask[:, :, None, None], expected, 0)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_module_drops_weights_only_when_not_deterministic():
  x = jax.random.normal(jax.random.key(0), (B, L, 8))
  mask = jnp.asarray(_inputs()[3])
  config = EncoderConfig(hidden=8, heads=H, attention='softmax', causal=True)
  plain = MultiHeadAttention(config)
  dropping = MultiHeadAttention(
      dataclasses.replace(config, attention_dropout=0.5)
  )
  params = plain.init(jax.random.key(1), x, mask)
  # Same parameters: the rate adds none.
  assert jax.tree.structure(params) == jax.tree.structure(
      dropping.init(jax.random.key(1), x, mask)
  )
  reference = plain.apply(params, x, mask)
  np.testing.assert_allclose(
      dropping.apply(params, x, mask), reference, rtol=1e-6
  )
  train = dropping.apply(
      params, x, mask, deterministic=False, rngs={'dropout': jax.random.key(2)}
  )
  assert not np.allclose(train, reference)
  assert np.isfinite(np.asarray(train)).all()


def test_linear_variants_refuse_attention_dropout():
  with pytest.raises(ValueError, match='attention_dropout'):
    SASRec(
        10,
        EncoderConfig(
            max_len=6,
            hidden=8,
            heads=2,
            attention='linrec',
            attention_dropout=0.2,
        ),
    )
