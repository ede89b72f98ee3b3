"""Data-parallel launchers for the steps of `linrec_jax.training.steps`.

Both split the global batch over the devices and keep the parameters
replicated; they differ in how the program is written:
- `MeshLauncher`: `jax.jit` over a 1-D mesh `('data',)`, parameters `P()`,
  batches `P('data')`. One global program; spans several hosts, where each
  process contributes its own rows (`jax.make_array_from_process_local_data`).
- `PmapLauncher`: `jax.pmap` over a named axis with explicit `psum`s.

A launcher moves host (NumPy) batches and states onto its devices, runs the
compiled steps, and hands states back as ordinary single-device pytrees, so
checkpoints do not depend on the device count that wrote them.
"""

import collections
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from linrec_jax.training import steps

AXIS = "data"
# Training steps the host may dispatch ahead of the devices (see `_paced`).
RUN_AHEAD = 2


@runtime_checkable
class Launcher(Protocol):
  """What the training loop and the evaluator use of a launcher.

  States and batches cross in host form (NumPy pytrees, this process's rows
  of the global batch) and come back as single-device pytrees, so nothing
  outside a launcher depends on the device count.

  Attributes:
    num_devices: devices the global batch is split over (all processes).
    num_local_devices: those of this process.
    train_step: `(state, batch, rng) -> (state, metrics)` on placed values,
      `steps.make_train_step`'s contract; `metrics` are replicated.
    eval_step: `(params, batch) -> sums`, replicated, `steps.make_eval_step`.
  """

  num_devices: int
  num_local_devices: int
  train_step: Callable
  eval_step: Callable

  def put_state(self, tree: Any) -> Any:
    """A host pytree replicated on the devices (the same in every process)."""

  def put_replicated(self, tree: Any) -> Any:
    """A host value (the run's key) replicated as `train_step` takes it."""

  def get_state(self, tree: Any) -> Any:
    """A host copy of a replicated pytree."""

  def unreplicate(self, tree: Any) -> Any:
    """One global value per leaf of replicated step outputs."""

  def put_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """This process's rows of a global batch, split over the devices."""


def select_devices(count: int) -> list[jax.Device]:
  """The first `count` devices (0: all of them), the same share per process.

  With several processes, `count` is the global number and must split evenly:
  each process contributes its first `count / process_count` local devices,
  so every process holds the same number of rows of each batch.
  """
  devices = jax.devices()
  if count == 0:
    return devices
  if count < 0 or count > len(devices):
    raise ValueError(
        f"--devices={count}: {len(devices)} available "
        f"({devices[0].platform})"
    )
  processes = jax.process_count()
  if processes == 1:
    return devices[:count]
  if count % processes:
    raise ValueError(
        f"--devices={count} does not split over {processes} "
        f"processes; use a multiple of {processes}"
    )
  share = count // processes
  by_process = [
      [d for d in devices if d.process_index == p] for p in range(processes)
  ]
  if min(len(local) for local in by_process) < share:
    raise ValueError(
        f"--devices={count}: some process has fewer than {share} devices"
    )
  return [d for local in by_process for d in local[:share]]


def check_divisible(batch_size: int, num_devices: int, flag: str) -> None:
  """Raises a ValueError naming `--flag` unless `batch_size` splits evenly."""
  if batch_size % num_devices:
    raise ValueError(
        f"--{flag}={batch_size} does not split over "
        f"{num_devices} devices; use a multiple of {num_devices}"
    )


class MeshLauncher:
  """`jax.jit` over a one-dimensional device mesh `('data',)`.

  The step is one global program: parameters and optimiser state are
  replicated (`P()`), batches are split by rows (`P('data')`), and XLA
  inserts the all-reduce of the gradients. With several processes each one
  passes its own rows and `jax.make_array_from_process_local_data` assembles
  the global batch.
  """

  def __init__(
      self,
      devices: Sequence[jax.Device],
      train_step: Callable,
      eval_step: Callable,
      compiler_options: dict[str, str] | None = None,
  ):
    self.mesh = Mesh(np.asarray(devices), (AXIS,))
    self.num_devices = len(devices)
    self.num_local_devices = sum(
        d.process_index == jax.process_index() for d in devices
    )
    self._replicated = NamedSharding(self.mesh, P())
    self._sharded = NamedSharding(self.mesh, P(AXIS))
    self.train_step = _paced(
        jax.jit(
            train_step,
            in_shardings=(self._replicated, self._sharded, self._replicated),
            out_shardings=(self._replicated, self._replicated),
            donate_argnums=0,
            compiler_options=compiler_options,
        )
    )
    evaluate = jax.jit(
        eval_step,
        in_shardings=(self._replicated, self._sharded),
        out_shardings=self._replicated,
    )
    self.eval_step = lambda *args: jax.block_until_ready(evaluate(*args))

  def put_state(self, tree: Any) -> Any:
    """Replicates a pytree (every process passes the same values)."""
    # From host copies: a process cannot place its local device arrays on
    # devices of other processes, but every process can put its NumPy value.
    return jax.device_put(jax.device_get(tree), self._replicated)

  def get_state(self, tree: Any) -> Any:
    """A host (NumPy) copy of a replicated pytree, in every process."""
    return jax.device_get(tree)

  def unreplicate(self, tree: Any) -> Any:
    """Replicated step outputs as they are: one global value each."""
    return tree

  def put_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """Places this process's rows of a global batch, sharded over the mesh."""
    if jax.process_count() == 1:
      return jax.device_put(local_batch, self._sharded)
    return {
        name: jax.make_array_from_process_local_data(self._sharded, x)
        for name, x in local_batch.items()
    }

  put_replicated = put_state


class PmapLauncher:
  """`jax.pmap` over the named axis `'data'`; the steps psum over it.

  Replicated values carry a leading axis of one copy per local device; each
  process passes its rows of a batch split into one slice per local device.
  """

  def __init__(
      self,
      devices: Sequence[jax.Device],
      train_step: Callable,
      eval_step: Callable,
  ):
    self.devices = [
        d for d in devices if d.process_index == jax.process_index()
    ]
    self.num_devices = len(devices)
    self.num_local_devices = len(self.devices)
    # `devices` lists the devices of every process, as pmap requires.
    self.train_step = _paced(
        jax.pmap(train_step, axis_name=AXIS, devices=devices, donate_argnums=0)
    )
    evaluate = jax.pmap(eval_step, axis_name=AXIS, devices=devices)
    self.eval_step = lambda *args: jax.block_until_ready(
        _first(evaluate(*args))
    )
    # Replicated inputs must carry the sharding the steps' outputs carry, or
    # the second step would be traced and compiled again for it.
    self._replicate = jax.pmap(lambda x: x, axis_name=AXIS, devices=devices)

  def put_state(self, tree: Any) -> Any:
    """One copy of a pytree on each local device."""
    n = self.num_local_devices
    copies = jax.tree.map(
        lambda x: np.broadcast_to(x, (n,) + np.shape(x)), jax.device_get(tree)
    )
    return self._replicate(copies)

  def get_state(self, tree: Any) -> Any:
    """A host (NumPy) copy of a replicated pytree: the first local copy."""
    return jax.device_get(_first(tree))

  def unreplicate(self, tree: Any) -> Any:
    """Replicated step outputs as device arrays of the first local copy."""
    return _first(tree)

  def put_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """Splits this process's rows into one slice per local device."""
    n = self.num_local_devices
    return {
        name: x.reshape((n, -1) + x.shape[1:])
        for name, x in local_batch.items()
    }

  put_replicated = put_state


def _paced(train_step: Callable) -> Callable:
  """`train_step` that waits for the step `RUN_AHEAD` calls back to finish.

  XLA's CPU client admits at most 32 programs in flight per device, and a
  host that runs further ahead can deadlock it: programs that wait for a
  step's results fill the slots that step still needs to launch (seen with
  cross-process collectives, where the other devices then wait in the
  all-reduce forever). A short run-ahead keeps host and devices overlapped.
  The evaluation steps wait for their sums for the same reason.
  """
  pending = collections.deque()

  def run(state, batch, rng):
    new_state, metrics = train_step(state, batch, rng)
    pending.append(metrics)  # The state is donated to the next step.
    if len(pending) > RUN_AHEAD:
      jax.block_until_ready(pending.popleft())
    return new_state, metrics

  return run


def _first(tree: Any) -> Any:
  """The copy on the first local device of each pmapped leaf."""

  def first(x):
    # A shard keeps the mapped axis (size 1) under NamedSharding, as pmap
    # returns here; a PmapSharding shard drops it.
    shard = x.addressable_shards[0].data
    return shard[0] if shard.ndim == x.ndim else shard

  return jax.tree.map(first, tree)


def make_launcher(
    kind: str,
    devices: Sequence[jax.Device],
    model,
    tx,
    *,
    loss: str,
    num_items: int,
    num_negatives: int,
    protocol: str,
    ks: tuple[int, ...],
    microbatches: int = 1,
    loss_normalizer: float = 0.0,
    compiler_options: dict[str, str] | None = None,
) -> Launcher:
  """Builds the train and eval steps for `kind` ("mesh" or "pmap").

  `compiler_options` (see `compiler_options.train_step_options`) go to the
  mesh launcher's `jax.jit` of the train step; `jax.pmap` takes none.
  """
  axis = AXIS if kind == "pmap" else None
  train_step = steps.make_train_step(
      model,
      tx,
      loss=loss,
      num_items=num_items,
      num_negatives=num_negatives,
      microbatches=microbatches,
      axis_name=axis,
      loss_normalizer=loss_normalizer,
  )
  eval_step = steps.make_eval_step(
      model, protocol=protocol, ks=ks, axis_name=axis
  )
  if kind == "pmap":
    return PmapLauncher(devices, train_step, eval_step)
  return MeshLauncher(devices, train_step, eval_step, compiler_options)
