"""The packed 16-bit dropout against NumPy and against its distribution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linrec_jax.layers import dropout


def _np_keep(words: np.ndarray, size: int, rate: float) -> np.ndarray:
  """NumPy: element j < W of a row is the low half of word j, element
  W + j the high half; dropped below round(rate * 65536)."""
  low, high = words & 0xFFFF, words >> 16
  halves = np.concatenate([low, high], axis=-1)[..., :size]
  return halves >= int(np.round(rate * 65536))


@pytest.mark.parametrize('size', [8, 7, 1])
def test_mask_splits_each_word_into_two_decisions(size):
  key = jax.random.key(3)
  shape = (4, 5, size)
  words = np.asarray(
      jax.random.bits(key, (4, 5, (size + 1) // 2), jnp.uint32), np.int64
  )
  keep = dropout.keep_mask(key, shape, 0.3)
  assert keep.shape == shape and keep.dtype == jnp.bool_
  np.testing.assert_array_equal(keep, _np_keep(words, size, 0.3))


def test_output_is_the_kept_input_scaled_to_the_same_expectation():
  key, x = jax.random.key(0), jax.random.normal(jax.random.key(1), (6, 10))
  out = dropout.dropout(key, x, 0.2)
  keep = np.asarray(dropout.keep_mask(key, x.shape, 0.2))
  scale = 65536 / (65536 - 13107)  # Drop below 13107 = round(0.2 * 65536).
  np.testing.assert_allclose(out, np.where(keep, x * scale, 0), rtol=1e-6)
  assert out.dtype == x.dtype


@pytest.mark.parametrize('rate', [0.1, 0.2, 0.5])
def test_drop_rate_and_mean_match_the_rate(rate):
  # 2**20 decisions: the drop share is within 6 binomial standard errors
  # of threshold / 65536, and the two halves of a word are uncorrelated.
  x = jnp.ones((256, 4096))
  out = np.asarray(dropout.dropout(jax.random.key(7), x, rate))
  p = round(rate * 65536) / 65536
  dropped = out == 0
  assert abs(dropped.mean() - p) < 6 * np.sqrt(p * (1 - p) / dropped.size)
  assert abs(out.mean() - 1.0) < 6 * np.sqrt(p / (1 - p) / out.size)
  low, high = dropped[:, :2048].ravel(), dropped[:, 2048:].ravel()
  assert abs(np.corrcoef(low, high)[0, 1]) < 6 / np.sqrt(low.size)


def test_keys_give_independent_masks():
  x = jnp.ones((64, 64))
  a = np.asarray(dropout.dropout(jax.random.key(0), x, 0.5)) == 0
  b = np.asarray(dropout.dropout(jax.random.key(1), x, 0.5)) == 0
  assert 0.4 < (a == b).mean() < 0.6


def test_edge_rates_and_refusals():
  x = jnp.arange(1.0, 7.0)
  key = jax.random.key(0)
  np.testing.assert_array_equal(dropout.dropout(key, x, 0.0), x)
  np.testing.assert_array_equal(dropout.dropout(key, x, 1.0), 0 * x)
  with pytest.raises(ValueError, match='outside'):
    dropout.drop_threshold(1.5)


def test_module_is_the_identity_when_deterministic():
  x = jax.random.normal(jax.random.key(1), (3, 4, 8))
  layer = dropout.Dropout(rate=0.5)
  np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)
  key = jax.random.key(2)
  out = layer.apply({}, x, deterministic=False, rngs={'dropout': key})
  # The module's key is the stream's key for its scope, folded by Flax.
  assert out.shape == x.shape and (np.asarray(out) == 0).any()
  kept = np.asarray(out) != 0
  np.testing.assert_allclose(np.asarray(out)[kept], (x * 2)[kept], rtol=1e-6)
