"""Refuses, before allocating anything, a run that cannot fit in memory.

The estimate is a lower bound, so that no feasible run is refused: the
arrays a checkpoint holds (train state and best parameters, exact from
`jax.eval_shape`) plus the output scores of one device's training chunk
(`rows x scored positions x items` float32, computed at least once by the
full-softmax loss). The budget is the memory of the first device: its
`bytes_limit` on an accelerator, the available RAM (within a cgroup limit)
on a CPU.
"""

import math
import os
from typing import Any

import jax
import numpy as np

from linrec_jax.training.config import TrainConfig

GIB = 2**30


class MemoryBudgetError(ValueError):
  """The configuration needs more memory than the device has."""


def tree_bytes(tree: Any) -> int:
  """Bytes of the leaves of a pytree of arrays or shape structs."""
  return sum(
      math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
      for leaf in jax.tree.leaves(tree)
  )


def available_bytes(device: jax.Device) -> int | None:
  """Memory the device can give a run, or None when it cannot be told."""
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    return stats.get("bytes_limit")
  limits = []
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          limits.append(int(line.split()[1]) * 1024)
  except OSError:
    pass
  try:
    with open("/sys/fs/cgroup/memory.max") as f:
      text = f.read().strip()
    if text.isdigit():
      limits.append(int(text))
  except OSError:
    pass
  return min(limits) if limits else None


def scored_positions(config: TrainConfig) -> int:
  """Positions per training row whose scores over all items are computed."""
  if config.train_mode == "all":
    return config.max_len
  if config.train_mode == "cloze":
    return config.max_predictions or max(
        int(config.mask_prob * config.max_len), 1
    )
  return 1


def check(
    config: TrainConfig,
    abstract_arrays: Any,
    *,
    num_items: int,
    num_devices: int,
    device: jax.Device,
) -> None:
  """Raises MemoryBudgetError naming the flags when the run cannot fit.

  Args:
    config: the run's configuration.
    abstract_arrays: `jax.eval_shape` of what a checkpoint holds.
    num_items: the catalogue size.
    num_devices: devices the batch is split over.
    device: the first of them.
  """
  budget = available_bytes(device)
  if budget is None:
    return
  state = tree_bytes(abstract_arrays)
  if state > budget:
    raise MemoryBudgetError(
        f"--hidden={config.hidden}, --ffn={config.ffn}, --layers="
        f"{config.layers}, --max_len={config.max_len} with {num_items} "
        f"items: the parameters and optimiser state need "
        f"{state / GIB:.1f} GiB, more than the {budget / GIB:.1f} GiB "
        f"available on {device.platform}"
    )
  scores = 0
  if config.loss == "ce":
    rows = max(config.batch_size // num_devices // config.microbatches, 1)
    scores = rows * scored_positions(config) * (num_items + 1) * 4
  if state + scores > budget:
    raise MemoryBudgetError(
        f"--batch_size={config.batch_size} (--microbatches="
        f"{config.microbatches}), --max_len={config.max_len}: the scores of "
        f"one training chunk over {num_items} items need "
        f"{scores / GIB:.1f} GiB beside {state / GIB:.1f} GiB of "
        f"parameters, more than the {budget / GIB:.1f} GiB available on "
        f"{device.platform}; lower them or raise --microbatches"
    )
