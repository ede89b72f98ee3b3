"""The batches every implementation of the peer benchmark trains on.

Each cell draws one batch of prefix samples (a history, right-padded with
item 0, and the next item as its target) and every implementation, JAX or
PyTorch, reads the same arrays from one `.npz` file. Item ids are random;
the lengths are drawn from the prefix samples of ML-1M's training part, so
the padding is as in real prefix training at that N.

Needs only NumPy: both virtual environments import it.
"""

import numpy as np

PAD = 0


def prefix_lengths(train_lengths: np.ndarray, max_len: int) -> np.ndarray:
  """The input length of every prefix sample, clipped at `max_len`.

  A user with `m` training items gives the samples `<i1> -> i2`, ...,
  `<i1..i_{m-1}> -> i_m`: inputs of length 1 .. m - 1.

  Args:
    train_lengths: int [num_users], training items per user.
    max_len: the model's N; longer prefixes keep their last N items.

  Returns:
    int64 [num_samples], user by user, shortest first within a user.
  """
  counts = np.maximum(np.asarray(train_lengths, np.int64) - 1, 0)
  starts = np.repeat(np.cumsum(counts) - counts, counts)
  lengths = np.arange(counts.sum()) - starts + 1
  return np.minimum(lengths, max_len)


def padding_share(lengths: np.ndarray, max_len: int) -> float:
  """The fraction of the `[len(lengths), max_len]` inputs that is padding."""
  return float(1 - np.sum(lengths) / (len(lengths) * max_len))


def draw_batch(
    rng: np.random.Generator,
    pool: np.ndarray,
    *,
    batch: int,
    max_len: int,
    num_items: int,
) -> dict[str, np.ndarray]:
  """One batch of right-padded prefix samples with random items.

  Args:
    rng: the generator.
    pool: prefix lengths to draw from (with replacement), each in
      1..max_len (see `prefix_lengths`).
    batch: rows B.
    max_len: columns N.
    num_items: items are 1..num_items.

  Returns:
    `inputs` int32 [B, N] (item ids, then PAD), `lengths` int32 [B] and
    `targets` int32 [B] (each row's next item).
  """
  lengths = rng.choice(pool, size=batch).astype(np.int32)
  if lengths.min() < 1 or lengths.max() > max_len:
    raise ValueError(
        f'prefix lengths must lie in 1..{max_len}, got '
        f'{lengths.min()}..{lengths.max()}'
    )
  items = rng.integers(1, num_items + 1, size=(batch, max_len), dtype=np.int32)
  real = np.arange(max_len) < lengths[:, None]
  return {
      'inputs': np.where(real, items, PAD).astype(np.int32),
      'lengths': lengths,
      'targets': rng.integers(1, num_items + 1, size=batch, dtype=np.int32),
  }


def save(path, arrays: dict[str, np.ndarray]) -> None:
  np.savez(path, **arrays)


def load(path) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as npz:
    return {name: npz[name] for name in npz.files}
