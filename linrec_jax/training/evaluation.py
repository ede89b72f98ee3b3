"""Ranking evaluation over the users of one split, one batch at a time.

Only one batch of scores (`[eval_batch, num_items + 1]`) exists at a time;
the metric sums are accumulated on the device and divided once at the end.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from linrec_jax import data
from linrec_jax import metrics
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
      return negatives_lib.sample_uniform(
          user_key, target, num_items, SAMPLED_NEGATIVES
      )
    return negatives_lib.sample_popularity(
        user_key, target, popularity, SAMPLED_NEGATIVES
    )

  return jax.vmap(one)(users, targets)


class Evaluator:
  """Computes mean ranking metrics of a split for given parameters.

  Under the full-ranking protocol every pass gives both protocols from the
  same scores: the metrics with the user's history kept in the ranking (as
  RecBole), the same names suffixed `metrics.HISTORY_EXCLUDED` with it
  excluded (as SASRec+ and LRURec), `metrics.SEEN_AT_10` and
  `metrics.SEEN_INPUT_AT_10`.

  Attributes:
    stage: "valid" or "test".
  """

  def __init__(
      self,
      launcher,
      seqs: data.Sequences,
      *,
      stage: str,
      protocol: str,
      max_len: int,
      batch_size: int,
      pad_side: str,
      mask_token: int | None,
      seed: int,
  ):
    self.stage = stage
    self._launcher = launcher
    self._seqs = seqs
    self._protocol = protocol
    self._batch_options = dict(
        max_len=max_len,
        batch_size=batch_size,
        pad_side=pad_side,
        mask_token=mask_token,
        with_history=protocol == "full",
        shard=(jax.process_index(), jax.process_count()),
    )
    self._key = jax.random.PRNGKey(seed)
    self._popularity = (
        item_popularity(seqs)
        if protocol == "pop100"
        else np.zeros((seqs.num_items + 1,), np.float32)
    )

  def __call__(self, params) -> dict[str, float]:
    """Mean metrics over all users of the split (`params` on the devices)."""
    totals = None
    for batch in data.eval_batches(
        self._seqs, self.stage, **self._batch_options
    ):
      if self._protocol != "full":
        batch["negatives"] = np.asarray(
            _eval_negatives(
                self._key,
                jnp.asarray(batch["users"]),
                jnp.asarray(batch["targets"]),
                self._popularity,
                protocol=self._protocol,
                num_items=self._seqs.num_items,
            )
        )
      sums = self._launcher.eval_step(params, self._launcher.put_batch(batch))
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = float(totals.pop("count"))
    return {name: float(value) / count for name, value in totals.items()}


def popularity_metrics(
    seqs: data.Sequences,
    stage: str,
    ks: tuple[int, ...] = metrics.DEFAULT_KS,
    batch_size: int = 1024,
) -> dict[str, float]:
  """The most-popular baseline under the full-ranking protocol.

  Every user gets the same scores, the training-part counts of
  `item_popularity`; ranks count ties against the target and the history is
  not excluded, as in `Evaluator`.

  Args:
    seqs: the prepared sequences.
    stage: `data.VALID` or `data.TEST`.
    ks: metric cut-offs.
    batch_size: users ranked at a time.

  Returns:
    Mean metrics over all users, named as the evaluator names them.
  """
  targets = seqs.items[data.history_end(seqs, stage)]
  scores = jnp.asarray(item_popularity(seqs))[None]
  sums = None
  for start in range(0, len(targets), batch_size):
    chunk = jnp.asarray(targets[start : start + batch_size])
    ranks = metrics.target_ranks(
        jnp.broadcast_to(scores, (len(chunk), scores.shape[1])), chunk
    )
    chunk_sums = {
        name: float(jnp.sum(value))
        for name, value in metrics.rank_metrics(ranks, ks).items()
    }
    sums = (
        chunk_sums
        if sums is None
        else {name: sums[name] + chunk_sums[name] for name in sums}
    )
  return {name: value / len(targets) for name, value in sums.items()}
