"""Ranking evaluation over the users of one split, one batch at a time.

Only one batch of scores (`[eval_batch, num_items + 1]`) exists at a time;
the metric sums are accumulated on the device and divided once at the end.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from linrec_jax import data
from linrec_jax import negatives as negatives_lib

SAMPLED_NEGATIVES = 100


def item_popularity(seqs: data.Sequences) -> np.ndarray:
  """Training-part interaction counts as probabilities `[num_items + 1]`.

  Only the training part of each user (the leave-one-out split) counts, so
  the validation and test items do not shape their own negatives.
  """
  keep = np.ones(seqs.items.shape[0], bool)
  keep[seqs.offsets[1:] - 1] = False  # test items
  keep[seqs.offsets[1:] - 2] = False  # validation items
  counts = np.bincount(seqs.items[keep], minlength=seqs.num_items + 1)
  counts[0] = 0
  return (counts / counts.sum()).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("protocol", "num_items"))
def _eval_negatives(key, users, targets, popularity, *, protocol, num_items):
  """`[B, 100]` negatives per row, drawn from a key of the user alone."""

  def one(user, target):
    user_key = jax.random.fold_in(key, user)
    if protocol == "uni100":
      return negatives_lib.sample_uniform(user_key, target, num_items,
                                          SAMPLED_NEGATIVES)
    return negatives_lib.sample_popularity(user_key, target, popularity,
                                           SAMPLED_NEGATIVES)

  return jax.vmap(one)(users, targets)


class Evaluator:
  """Computes mean ranking metrics of a split for given parameters.

  Attributes:
    stage: "valid" or "test".
  """

  def __init__(self, launcher, seqs: data.Sequences, *, stage: str,
               protocol: str, max_len: int, batch_size: int, pad_side: str,
               mask_token: int | None, exclude_history: bool, seed: int):
    self.stage = stage
    self._launcher = launcher
    self._seqs = seqs
    self._protocol = protocol
    self._batch_options = dict(
        max_len=max_len, batch_size=batch_size, pad_side=pad_side,
        mask_token=mask_token,
        with_history=exclude_history and protocol == "full",
        shard=(jax.process_index(), jax.process_count()))
    self._key = jax.random.PRNGKey(seed)
    self._popularity = (item_popularity(seqs) if protocol == "pop100"
                        else np.zeros((seqs.num_items + 1,), np.float32))

  def __call__(self, params) -> dict[str, float]:
    """Mean metrics over all users of the split (`params` on the devices)."""
    totals = None
    for batch in data.eval_batches(self._seqs, self.stage,
                                   **self._batch_options):
      if self._protocol != "full":
        batch["negatives"] = np.asarray(_eval_negatives(
            self._key, jnp.asarray(batch["users"]),
            jnp.asarray(batch["targets"]), self._popularity,
            protocol=self._protocol, num_items=self._seqs.num_items))
      sums = self._launcher.eval_step(params, self._launcher.put_batch(batch))
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = float(totals.pop("count"))
    return {name: float(value) / count for name, value in totals.items()}
