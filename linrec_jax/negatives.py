"""Negative item sampling for sampled losses and sampled evaluation protocols.

Pure, jit-able functions of a PRNG key: the same key and inputs always give the
same negatives. Every sampler returns ids in `1..num_items` that never equal the
row's target (exactly, not by rejection with a retry limit) and never equal
`PAD_ID`.

With `replace=False` (the default) the negatives of a row are distinct, as the
sampled evaluation protocols need (uni100 / pop100: 100 distinct negatives plus
the target). `replace=True` is cheaper and meant for training losses.
"""

import functools
import numbers

import jax
import jax.numpy as jnp

from linrec_jax.constants import PAD_ID

# Gumbel keys of zero-probability items are shifted this far down, so they are
# only picked (uniformly among themselves) once every positive-probability item
# is taken. Keys of positive items are >= log(smallest float32) - 5 > -110.
_ZERO_MASS_KEY_SHIFT = 1e3


def _check_count(num, available):
  """Raises if `num` distinct negatives cannot be drawn (static sizes only)."""
  if isinstance(available, numbers.Integral) and num > available:
    raise ValueError(
        f'Cannot draw {num} distinct negatives from {available} non-target '
        'items.'
    )


# Jitted so eager callers reuse one compiled loop instead of re-tracing it.
@functools.partial(jax.jit, static_argnums=(1, 3))
def _distinct_uniform(rng, batch_shape, population, num):
  """Draws `num` distinct ints from `0..population-1` per row, random order.

  Robert Floyd's algorithm: step i draws t from `0..j` with
  `j = population - num + i` and keeps t, or j if t was already taken. This
  yields a uniformly random subset in O(num^2) per row, independent of
  `population`. A final shuffle makes the order uniformly random too, so any
  prefix of the result is itself a uniform sample.

  Args:
    rng: PRNG key.
    batch_shape: tuple, leading shape of the result.
    population: int (may be traced), number of values to choose from.
    num: Python int, values per row.

  Returns:
    int32 [*batch_shape, num].
  """
  draw_rng, shuffle_rng = jax.random.split(rng)
  slots = jnp.arange(num)
  highs = slots + (population - num)  # j for each step i
  draws = jax.random.randint(
      draw_rng, batch_shape + (num,), 0, highs + 1, dtype=jnp.int32
  )

  def step(i, chosen):
    candidate = draws[..., i]
    taken = jnp.any((chosen == candidate[..., None]) & (slots < i), axis=-1)
    value = jnp.where(taken, highs[i], candidate).astype(jnp.int32)
    return chosen.at[..., i].set(value)

  chosen = jax.lax.fori_loop(
      0, num, step, jnp.zeros(batch_shape + (num,), jnp.int32)
  )
  order = jnp.argsort(jax.random.uniform(shuffle_rng, chosen.shape), axis=-1)
  return jnp.take_along_axis(chosen, order, axis=-1)


def sample_uniform(rng, targets, num_items, num, *, replace=False):
  """Samples negatives uniformly from all items except each row's target.

  Draws from `num_items - 1` values and shifts those at or above the target
  past it, so every non-target item has exactly the same probability. Rows
  whose target is `PAD_ID` get ids in `2..num_items` (still valid items).

  Args:
    rng: PRNG key.
    targets: int [...] target item ids in `1..num_items`.
    num_items: int, number of real items (ids `1..num_items`).
    num: Python int, negatives per row; with `replace=False` at most
      `num_items - 1`.
    replace: if False, the negatives of a row are distinct (O(num^2) work per
      row); if True, independent draws (O(num) per row).

  Returns:
    int32 [..., num] item ids in `1..num_items`, none equal to the row's target.
  """
  targets = jnp.asarray(targets, jnp.int32)
  population = num_items - 1  # every item but the target
  batch_shape = targets.shape
  if replace:
    draws = jax.random.randint(
        rng, batch_shape + (num,), 0, population, dtype=jnp.int32
    )
  else:
    _check_count(num, population)
    draws = _distinct_uniform(rng, batch_shape, population, num)
  ids = draws + 1  # 1..num_items-1
  return ids + (ids >= targets[..., None]).astype(jnp.int32)


def _without_replacement(rng, targets, probabilities, num):
  """Gumbel top-k over log-probabilities with the target and padding removed."""
  num_columns = probabilities.shape[-1]
  _check_count(num, num_columns - 2)  # all columns but padding and target
  columns = jnp.arange(num_columns)
  positive = probabilities > 0
  log_probs = jnp.log(jnp.where(positive, probabilities, 1.0))
  gumbel = jax.random.gumbel(rng, targets.shape + (num_columns,))
  keys = jnp.where(positive, log_probs + gumbel, gumbel - _ZERO_MASS_KEY_SHIFT)
  excluded = (columns == PAD_ID) | (columns == targets[..., None])
  keys = jnp.where(excluded, -jnp.inf, keys)
  _, ids = jax.lax.top_k(keys, num)
  return ids.astype(jnp.int32)


def _with_replacement(rng, targets, probabilities, num):
  """Inverse-CDF sampling with the target's CDF interval cut out.

  A uniform draw over the mass of all non-target items is mapped below the
  target's interval as is and above it shifted by the target's mass, then
  looked up in the CDF: exact exclusion in O(log V) per draw, without the
  O(V) per row that the Gumbel method needs.
  """
  num_columns = probabilities.shape[-1]
  columns = jnp.arange(num_columns)
  probabilities = jnp.where(columns == PAD_ID, 0.0, probabilities)
  cdf = jnp.cumsum(probabilities)  # [V]
  cdf_before = jnp.concatenate([jnp.zeros((1,), cdf.dtype), cdf[:-1]])
  mass_below = jnp.take(cdf_before, targets)[..., None]  # [..., 1]
  target_end = jnp.take(cdf, targets)[..., None]
  mass_kept = mass_below + (cdf[-1] - target_end)
  u = jax.random.uniform(rng, targets.shape + (num,)) * mass_kept
  # Keep u < mass_kept strictly: u == mass_kept would land on the target when
  # nothing lies above it.
  u = jnp.minimum(u, jnp.nextafter(mass_kept, 0.0))
  u = jnp.where(u >= mass_below, target_end + (u - mass_below), u)
  ids = jnp.searchsorted(cdf, u, side='right')
  # Rounding can push a shifted u to the total mass; the last item with mass
  # lies above the target whenever the shifted branch is taken.
  last_with_mass = num_columns - 1 - jnp.argmax(probabilities[::-1] > 0)
  return jnp.minimum(ids, last_with_mass).astype(jnp.int32)


def sample_popularity(rng, targets, probabilities, num, *, replace=False):
  """Samples negatives in proportion to `probabilities`, excluding the target.

  Without replacement this is successive sampling (each next negative drawn in
  proportion to the probabilities of the items not yet drawn), implemented as
  Gumbel top-k: `top_k(log p + Gumbel noise)` over all items with the target
  and padding set to `-inf`. It costs O(V) per row, fine for evaluation
  batches. Zero-probability items are never drawn while enough positive ones
  remain; if fewer than `num` remain, zero-probability items fill the rest
  uniformly, so a row always holds `num` distinct non-target ids.

  With replacement, draws are independent and exact via an inverse CDF with
  the target's interval cut out (O(log V) per draw), for training losses.
  There the items other than the target must hold some positive probability.

  Args:
    rng: PRNG key.
    targets: int [...] target item ids in `1..V-1`.
    probabilities: float [V] nonnegative item weights (e.g. training counts),
      V = num_items + 1; need not sum to 1; column `PAD_ID` is ignored.
    num: Python int, negatives per row; with `replace=False` at most
      `num_items - 1`.
    replace: if False, distinct negatives per row; if True, independent draws.

  Returns:
    int32 [..., num] item ids in `1..num_items`, none equal to the row's target.
  """
  targets = jnp.asarray(targets, jnp.int32)
  probabilities = jnp.maximum(jnp.asarray(probabilities, jnp.float32), 0.0)
  if replace:
    return _with_replacement(rng, targets, probabilities, num)
  return _without_replacement(rng, targets, probabilities, num)
