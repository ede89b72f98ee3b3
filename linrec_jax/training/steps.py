"""Pure training and evaluation steps, written once for every launcher.

`make_train_step` returns `train_step(state, batch, rng) -> (state, metrics)`.
With `axis_name=None` it is the single-program step that `jax.jit` runs on one
device or over a device mesh (XLA inserts the reductions); with an axis name it
is the per-device body of `jax.pmap`, which sums gradients and counts over that
axis itself. Both compute the gradient of the same global mean loss: the sum
of the per-target losses over the whole global batch, divided by the global
number of targets (a mean of per-device means would weigh devices with few
targets too much).

Randomness (dropout, sampled negatives) is drawn per example, from
`fold_in(fold_in(rng, step), global_row)`, so it is the same whether a row is
processed on one device or on any of N: results do not depend on the device
count, and a run can resume on a different one.
"""

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from linrec_jax import losses
from linrec_jax import metrics
from linrec_jax.constants import PAD_ID
from linrec_jax.layers.encoder import gather_rows

Batch = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """The arrays a run checkpoints: step, parameters, optimiser state."""

  step: jax.Array
  params: Any
  opt_state: Any


def create_train_state(
    model, tx: optax.GradientTransformation, rng: jax.Array, max_len: int
) -> TrainState:
  """Initialises parameters and optimiser state (under eval_shape: shapes)."""
  inputs = jnp.zeros((1, max_len), jnp.int32)
  params = model.init(rng, inputs)["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params)
  )


def scored_states(model, variables, inputs, positions, **kwargs):
  """The model's states `[B, T, D]` at `positions` `[B, T]` (or `[B, D]` at
  `[B]`) of `inputs` `[B, L]`.

  With fewer positions than L per row (prefix samples, cloze, evaluation)
  the model computes its last block only at them (`layers.encoder`);
  otherwise (every position: mode all) it computes all and gathers, as it
  always has, so such runs draw the same dropout masks as before.
  """
  rows = positions.reshape(positions.shape[0], -1)
  if rows.shape[1] < inputs.shape[1]:
    picked = model.apply(variables, inputs, positions=rows, **kwargs)
  else:
    picked = gather_rows(model.apply(variables, inputs, **kwargs), rows)
  return picked.reshape(positions.shape + picked.shape[-1:])


def example_keys(rng: jax.Array, first_row, rows: int) -> jax.Array:
  """Keys `[rows]` of the global rows `first_row ..`: `fold_in(rng, row)`."""
  global_rows = first_row + jnp.arange(rows)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, global_rows)


def all_finite(tree: Any) -> jax.Array:
  """A scalar bool: every float leaf of `tree` is free of NaN and inf."""
  checks = [
      jnp.all(jnp.isfinite(leaf))
      for leaf in jax.tree.leaves(tree)
      if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
  ]
  return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)


def make_train_step(
    model,
    tx: optax.GradientTransformation,
    *,
    loss: str,
    num_items: int,
    num_negatives: int = 0,
    microbatches: int = 1,
    axis_name: str | None = None,
    score_block_rows: int | None = losses.BLOCK_ROWS,
    loss_normalizer: float = 0.0,
) -> Callable:
  """Builds the training step.

  Args:
    model: a model with the `__call__` / `item_embeddings` / `item_bias`
      surface (the scores are `states @ item_embeddings.T + item_bias`).
    tx: the optimiser.
    loss: "ce" (softmax over all items) or "sampled" (uniform negatives).
    num_items: items are `1..num_items`.
    num_negatives: uniform negatives per example for the sampled loss, shared
      by its positions.
    microbatches: split each device's rows into this many chunks, run them
      one after another and add their gradients (gradient accumulation): the
      same update (each row keeps its key), with the activations of one
      chunk in memory instead of the whole batch.
    axis_name: the pmap axis, or None under jit.
    score_block_rows: the full softmax scores this many of the batch's
      positions at a time (`losses.blockwise_cross_entropy`); None scores
      all of them at once (the `[B * T, V]` tensor; the same loss up to float
      rounding, kept as the reference the benchmarks compare with).
    loss_normalizer: 0 divides the global batch's loss sum by its number
      of targets; a positive value divides it by that constant instead
      (`TrainBatches.mean_targets_per_batch`), so every target weighs the
      same whatever batch it lands in. The reported "loss" is the mean per
      target either way.

  Returns:
    `train_step(state, batch, rng) -> (state, {"loss", "count", "finite"})`;
    the loss is the mean over all counted targets of the global batch;
    "finite" is False when the step's loss, gradients or new parameters
    held a NaN or inf, and then the state is the old one with step + 1.
    `rng` is the run's key; row r of the global batch at step s draws from
    `fold_in(fold_in(rng, s), r)`.
  """

  def example_states(params, example: Batch, key: jax.Array) -> jax.Array:
    """States `[T, D]` at one example's scored positions, its own dropout."""
    dropout_key, _ = jax.random.split(key)
    return scored_states(
        model,
        {"params": params},
        example["inputs"][None],
        example["positions"][None],
        deterministic=False,
        rngs={"dropout": dropout_key},
    )[0]

  def example_sampled_loss(params, example: Batch, key: jax.Array):
    """The sampled-softmax loss sum of one example (unbatched arrays)."""
    _, negatives_key = jax.random.split(key)
    picked = example_states(params, example, key)
    # A bias (BERT4Rec's) rides along as one more feature with a constant 1.
    table = jnp.concatenate(
        [item_table(params), item_bias(params)[:, None]], axis=-1
    )
    picked = jnp.concatenate([picked, jnp.ones_like(picked[..., :1])], -1)
    # One set of uniform negatives per example, shared by its positions:
    # S table rows are gathered once, not once per position. A negative
    # equal to a position's target is dropped from that position's softmax.
    sampled = jax.random.randint(
        negatives_key, (num_negatives,), 1, num_items + 1
    )
    return losses.sampled_softmax(picked, table, example["targets"], sampled)[0]

  def item_table(params):
    return model.apply({"params": params}, method="item_embeddings")

  def item_bias(params):
    return model.apply({"params": params}, method="item_bias")

  def loss_sum(params, batch: Batch, keys: jax.Array) -> jax.Array:
    if loss != "ce":
      per_example = jax.vmap(example_sampled_loss, in_axes=(None, 0, 0))
      return jnp.sum(per_example(params, batch, keys))
    # The full softmax scores the whole batch's positions together, a block
    # of rows at a time: never the [B * T, V] scores at once.
    picked = jax.vmap(example_states, in_axes=(None, 0, 0))(params, batch, keys)
    if score_block_rows is None:
      scores = model.apply({"params": params}, picked, method="logits")
      return losses.cross_entropy(scores, batch["targets"])[0]
    return losses.blockwise_cross_entropy(
        picked.reshape(-1, picked.shape[-1]),
        item_table(params),
        item_bias(params),
        batch["targets"].reshape(-1),
        score_block_rows,
    )[0]

  def accumulated_loss_sum(params, batch: Batch, keys: jax.Array):
    """`value_and_grad(loss_sum)`, one microbatch at a time."""
    rows = keys.shape[0]
    if rows % microbatches:
      raise ValueError(
          f"microbatches={microbatches} does not divide the "
          f"{rows} rows of a batch (per device)"
      )
    if microbatches == 1:
      return jax.value_and_grad(loss_sum)(params, batch, keys)
    # Chunk c holds rows c, c + m, c + 2m, ...: spread over every device of
    # a mesh, like the whole batch.
    split = lambda x: x.reshape((-1, microbatches) + x.shape[1:]).swapaxes(0, 1)

    def add_chunk(carry, chunk):
      chunk_batch, chunk_keys = chunk
      value, grads = jax.value_and_grad(loss_sum)(
          params, chunk_batch, chunk_keys
      )
      return jax.tree.map(jnp.add, carry, (value, grads)), None

    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
    total, _ = jax.lax.scan(
        add_chunk, zeros, (jax.tree.map(split, batch), split(keys))
    )
    return total

  def train_step(state: TrainState, batch: Batch, rng: jax.Array):
    rows = batch["targets"].shape[0]
    first_row = 0
    count = jnp.sum(batch["targets"] != PAD_ID)
    if axis_name is not None:
      first_row = jax.lax.axis_index(axis_name) * rows
      count = jax.lax.psum(count, axis_name)
    keys = example_keys(jax.random.fold_in(rng, state.step), first_row, rows)
    total, grads = accumulated_loss_sum(state.params, batch, keys)
    if axis_name is not None:
      total, grads = jax.lax.psum((total, grads), axis_name)
    # Integer counts are exact however they were summed.
    count = jnp.maximum(count, 1).astype(jnp.float32)
    normalizer = loss_normalizer if loss_normalizer > 0 else count
    grads = jax.tree.map(lambda g: g / normalizer, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # A step whose loss, gradients or new parameters are not finite is not
    # applied; its flag tells the host, which stops the run.
    finite = all_finite((total, grads, params))
    keep = lambda new, old: jax.tree.map(
        lambda n, o: jnp.where(finite, n, o), new, old
    )
    new_state = state.replace(
        step=state.step + 1,
        params=keep(params, state.params),
        opt_state=keep(opt_state, state.opt_state),
    )
    return new_state, {"loss": total / count, "count": count, "finite": finite}

  return train_step


def make_eval_step(
    model, *, protocol: str, ks: tuple[int, ...], axis_name: str | None = None
) -> Callable:
  """Builds `eval_step(params, batch) -> sums` for one evaluation batch.

  Args:
    model: the model.
    protocol: "full" ranks the target among all items; when the batch
      carries `history` `[B, M]` it adds, from the same scores, the metrics
      with the history excluded (names ending in
      `metrics.HISTORY_EXCLUDED`), `metrics.SEEN_AT_10` and
      `metrics.SEEN_INPUT_AT_10`;
      "uni100"/"pop100" rank it among the batch's `negatives` `[B, S]`.
    ks: cut-offs of the metrics.
    axis_name: the pmap axis, or None under jit.

  Returns:
    A function whose result maps each metric name to its sum over the valid
    rows, plus "count", the number of valid rows.
  """

  def eval_step(params, batch: Batch) -> dict[str, jax.Array]:
    variables = {"params": params}
    picked = scored_states(
        model, variables, batch["inputs"], batch["positions"]
    )
    scores = model.apply(variables, picked, method="logits")
    if protocol == "full":
      per_example = metrics.rank_metrics(
          metrics.target_ranks(scores, batch["targets"]), ks
      )
      if "history" in batch:
        per_example.update(
            metrics.history_excluded_metrics(
                scores, batch["targets"], batch["history"], ks
            )
        )
        per_example[metrics.SEEN_INPUT_AT_10] = metrics.seen_input_in_top(
            scores, batch["inputs"]
        )
    else:
      per_example = metrics.rank_metrics(
          metrics.sampled_ranks(scores, batch["targets"], batch["negatives"]),
          ks,
      )
    sums, count = metrics.summarize(per_example, batch["valid"])
    sums["count"] = count.astype(jnp.float32)
    if axis_name is not None:
      sums = jax.lax.psum(sums, axis_name)
    return sums

  return eval_step
