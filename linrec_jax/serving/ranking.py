"""Next-item scores of item histories, and the top-K items of each.

`score_histories` turns histories (internal item ids, oldest first) into the
scores a trained model (`linrec_jax.serving.restore`) gives the next item, building
the same input the evaluation uses; `top_items` picks the best K per row.
"""

import functools

import jax
import numpy as np

from linrec_jax import data
from linrec_jax.constants import PAD_ID
from linrec_jax.serving import streaming


def _windows(histories, width):
  """The last `width` items of every history, right-padded: int32 [B, W]."""
  out = np.full((len(histories), width), PAD_ID, np.int32)
  for row, items in enumerate(histories):
    items = items[-width:]
    out[row, : len(items)] = items
  return out


def score_histories(trained, histories, engine="full") -> np.ndarray:
  """Next-item scores `[B, num_items + 1]` after each history (internal ids).

  The full engine builds the model's evaluation input: the last max_len
  items, padded on the configured side (BERT4Rec: the last max_len - 1 and
  its mask token), and reads the state at the last real position.
  """
  model, params, config = trained.model, trained.params, trained.config
  mask_token = getattr(model, "mask_token", None)
  width = config.max_len - (mask_token is not None)
  inputs = _windows(histories, width)
  lengths = (inputs != PAD_ID).sum(axis=1)
  if engine == "streaming":
    if config.pad_side != data.PAD_RIGHT:
      raise ValueError(
          "--engine=streaming gives the scores of right-padded "
          "inputs; this model was trained with left padding"
      )
    state = streaming.init_state(params, len(histories), model=model)
    return np.asarray(
        streaming.scores(params, streaming.feed(params, state, inputs))
    )
  if mask_token is not None:
    inputs = np.concatenate([inputs, np.zeros_like(inputs[:, :1])], axis=1)
    inputs[np.arange(len(inputs)), lengths] = mask_token
    lengths = lengths + 1
  if config.pad_side == data.PAD_LEFT:
    inputs = np.stack([np.roll(r, len(r) - n) for r, n in zip(inputs, lengths)])
    lengths = np.full_like(lengths, inputs.shape[1])
  return np.asarray(_full_scores(model, params, inputs, lengths))


@functools.partial(jax.jit, static_argnums=0)
def _full_scores(model, params, inputs, lengths):
  last = model.apply({"params": params}, inputs, positions=lengths[:, None] - 1)
  return model.apply({"params": params}, last[:, 0], method="logits")


def top_items(scores, k, exclude=None):
  """The k best item ids per row (ties: lower id first), never PAD_ID.

  Args:
    scores: `[B, V]`.
    k: items per row.
    exclude: optional list of B iterables of ids to leave out.

  Returns:
    A list of B `(ids, scores)` pairs of arrays of up to k entries (fewer
    when fewer items are left).
  """
  scores = np.array(scores, np.float64)
  scores[:, PAD_ID] = -np.inf
  for row, items in enumerate(exclude or []):
    scores[row, list(items)] = -np.inf
  order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  best = np.take_along_axis(scores, order, axis=1)
  return [
      (ids[np.isfinite(s)], s[np.isfinite(s)]) for ids, s in zip(order, best)
  ]
