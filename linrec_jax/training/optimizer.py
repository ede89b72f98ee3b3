"""The Optax chain of a training run, built from config values in one place."""

import optax


def learning_rate_schedule(
    lr: float, schedule: str, warmup_steps: int, total_steps: int
) -> optax.Schedule:
  """Linear warm-up to `lr`, then constant, cosine or linear decay to zero.

  Args:
    lr: the peak learning rate.
    schedule: "constant", "cosine" or "linear".
    warmup_steps: steps of linear warm-up from 0 (0: none).
    total_steps: the length of the whole run, warm-up included.
  """
  decay_steps = max(total_steps - warmup_steps, 1)
  if schedule == "constant":
    after = optax.constant_schedule(lr)
  elif schedule == "cosine":
    after = optax.cosine_decay_schedule(lr, decay_steps)
  elif schedule == "linear":
    after = optax.linear_schedule(lr, 0.0, decay_steps)
  else:
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")
  if warmup_steps == 0:
    return after
  warmup = optax.linear_schedule(0.0, lr, warmup_steps)
  return optax.join_schedules([warmup, after], [warmup_steps])


def make_optimizer(
    *,
    lr: float,
    schedule: str = "constant",
    warmup_steps: int = 0,
    total_steps: int = 1,
    weight_decay: float = 0.0,
    grad_clip: float = 0.0,
) -> optax.GradientTransformation:
  """Adam (the paper's optimiser), AdamW when `weight_decay` > 0.

  Gradient clipping by global norm comes first when `grad_clip` > 0.
  """
  rate = learning_rate_schedule(lr, schedule, warmup_steps, total_steps)
  if weight_decay > 0:
    adam = optax.adamw(rate, weight_decay=weight_decay)
  else:
    adam = optax.adam(rate)
  if grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(grad_clip), adam)
  return adam
