"""Inverted dropout that draws two decisions from each 32-bit random word.

`flax.linen.Dropout` draws one 32-bit word per element (a uniform float
compared with the keep probability). Here each word of
`jax.random.bits` is split into two 16-bit halves, one decision each, so the
generator does half the work. An element is dropped when its 16-bit value is
below ``threshold = round(rate * 2**16)``: the drop probability is
``threshold / 2**16`` (for rate 0.2: 13107 / 65536 = 0.1999969), and kept
elements are scaled by ``1 / (1 - threshold / 2**16)``, so the expectation
of every element is exactly its input.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

HALF_BITS = 16
LEVELS = 2**HALF_BITS


def drop_threshold(rate: float) -> int:
  """The 16-bit value below which an element is dropped, ``[0, 2**16]``."""
  if not 0.0 <= rate <= 1.0:
    raise ValueError(f'dropout rate {rate} is outside [0, 1]')
  return round(rate * LEVELS)


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float):
  """Bool ``shape``: True where an element is kept.

  The last axis of size D takes ``ceil(D / 2)`` words: their low halves
  decide elements ``0 .. ceil(D/2) - 1``, their high halves the rest.
  """
  *lead, size = shape
  words = jax.random.bits(key, (*lead, -(-size // 2)), jnp.uint32)
  halves = jnp.concatenate([words & (LEVELS - 1), words >> HALF_BITS], -1)
  return halves[..., :size] >= drop_threshold(rate)


def dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
  """``x`` with each element zeroed with probability ~``rate`` (see above),
  the others scaled so the expectation is ``x``; same shape and dtype."""
  threshold = drop_threshold(rate)
  if threshold == 0:
    return x
  if threshold == LEVELS:
    return jnp.zeros_like(x)
  scale = LEVELS / (LEVELS - threshold)
  keep = keep_mask(key, x.shape, rate)
  return jnp.where(keep, x * jnp.asarray(scale, x.dtype), jnp.zeros_like(x))


class Dropout(nn.Module):
  """`dropout` as a module; its key comes from the 'dropout' rng stream.

  Attributes:
    rate: the drop probability (rounded to a multiple of 2**-16).
  """

  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    """Returns ``x`` unchanged when ``deterministic``, else `dropout` of it."""
    if deterministic or drop_threshold(self.rate) == 0:
      return x
    return dropout(self.make_rng('dropout'), x, self.rate)
