"""`attention.linrec_step`, the one-position recurrence, against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linrec_jax import models
from linrec_jax.layers import attention
from linrec_jax.layers.config import EncoderConfig
from reference_attention import np_attention, np_elu, np_sigmoid, np_unit

B, L, H, K = 2, 7, 3, 4
THETA = np.array([-0.5, 1.0, 3.0], np.float32)  # g = 0.38, 0.73, 0.95.


def _qkv(seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  return [np.asarray(jax.random.normal(key, (B, L, H, K))) for key in keys]


@pytest.mark.parametrize(
    'name', ['linrec', 'linrec_decay', 'linrec_learned_decay']
)
def test_steps_from_zero_give_causal_attention_and_the_state(name):
  q, k, v = _qkv()
  log_decay = attention.recurrent_log_decay(name, H, jnp.asarray(THETA))
  state = jnp.zeros((B, H, K, K), jnp.float32)
  outs = []
  for t in range(L):
    out, state = attention.linrec_step(
        q[:, t], k[:, t], v[:, t], state, log_decay=log_decay
    )
    outs.append(out)
  mask = np.ones((B, L), bool)
  expected = np_attention(name, q, k, v, mask, causal=True, decay_logit=THETA)
  np.testing.assert_allclose(np.stack(outs, 1), expected, atol=1e-5)
  # The state after L items: sum_j g^(L-1-j) k_hat_j v_j^T, in NumPy.
  g = {
      'linrec': np.ones(H),
      'linrec_decay': 1 - 2.0 ** -(1 + 7 * (np.arange(H) + 0.5) / H),
      'linrec_learned_decay': np_sigmoid(THETA),
  }[name]
  k_hat = np_unit(np_elu(k.astype(np.float64)), axis=-1)
  weight = g[None, :] ** (L - 1 - np.arange(L))[:, None]  # [L, H]
  want = np.einsum('lh,blhk,blhf->bhkf', weight, k_hat, v)
  np.testing.assert_allclose(state, want, atol=1e-5)


def test_only_recurrent_variants_have_a_step():
  with pytest.raises(ValueError, match='no recurrent form'):
    attention.recurrent_log_decay('softmax', H)
  assert attention.recurrent_log_decay('linrec', H) is None


@pytest.mark.parametrize(
    'config',
    [
        EncoderConfig(hidden=8, heads=2, attention='softmax', dropout=0.0),
        EncoderConfig(hidden=8, heads=2, causal=False, dropout=0.0),
    ],
    ids=['softmax', 'bidirectional'],
)
def test_decode_mode_needs_causal_recurrent_attention(config):
  model = models.SASRec(10, config)
  with pytest.raises(ValueError, match='decode needs causal attention'):
    model.init(jax.random.key(0), jnp.zeros((2, 1), jnp.int32), decode=True)
