"""Data-parallel launchers for the steps of `linrec_jax.steps`.

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

from typing import Any, Callable, Sequence

import flax.jax_utils
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from linrec_jax import steps

AXIS = "data"


def select_devices(count: int) -> list[jax.Device]:
  """The first `count` devices of every process (0: all of them)."""
  devices = jax.devices()
  if count == 0:
    return devices
  if count > len(devices):
    raise ValueError(f"--devices={count}: only {len(devices)} available "
                     f"({devices[0].platform})")
  return devices[:count]


def check_divisible(batch_size: int, num_devices: int, flag: str) -> None:
  if batch_size % num_devices:
    raise ValueError(f"--{flag}={batch_size} does not split over "
                     f"{num_devices} devices; use a multiple of {num_devices}")


class MeshLauncher:
  """`jax.jit` over a one-dimensional device mesh."""

  def __init__(self, devices: Sequence[jax.Device], train_step: Callable,
               eval_step: Callable):
    self.mesh = Mesh(np.asarray(devices), (AXIS,))
    self.num_devices = len(devices)
    self.num_local_devices = sum(
        d.process_index == jax.process_index() for d in devices)
    self._replicated = NamedSharding(self.mesh, P())
    self._sharded = NamedSharding(self.mesh, P(AXIS))
    self.train_step = jax.jit(
        train_step, in_shardings=(self._replicated, self._sharded,
                                  self._replicated),
        out_shardings=(self._replicated, self._replicated), donate_argnums=0)
    self.eval_step = jax.jit(eval_step, out_shardings=self._replicated)

  def put_state(self, tree: Any) -> Any:
    return jax.device_put(tree, self._replicated)

  def get_state(self, tree: Any) -> Any:
    return jax.device_get(tree)

  def put_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """Places this process's rows of a global batch, sharded over the mesh."""
    if jax.process_count() == 1:
      return jax.device_put(local_batch, self._sharded)
    return {name: jax.make_array_from_process_local_data(self._sharded, x)
            for name, x in local_batch.items()}

  def put_replicated(self, tree: Any) -> Any:
    return jax.device_put(tree, self._replicated)


class PmapLauncher:
  """`jax.pmap` over a named axis; the steps psum over it themselves."""

  def __init__(self, devices: Sequence[jax.Device], train_step: Callable,
               eval_step: Callable):
    self.devices = [d for d in devices if d.process_index == jax.process_index()]
    self.num_devices = len(devices)
    self.num_local_devices = len(self.devices)
    self.train_step = jax.pmap(train_step, axis_name=AXIS,
                               devices=devices, donate_argnums=0)
    pmapped_eval = jax.pmap(eval_step, axis_name=AXIS, devices=devices)
    self.eval_step = lambda params, batch: _first(pmapped_eval(params, batch))

  def put_state(self, tree: Any) -> Any:
    return flax.jax_utils.replicate(tree, self.devices)

  def get_state(self, tree: Any) -> Any:
    return jax.device_get(_first(tree))

  def put_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """Splits this process's rows into one slice per local device."""
    n = self.num_local_devices
    return {name: x.reshape((n, -1) + x.shape[1:])
            for name, x in local_batch.items()}

  def put_replicated(self, tree: Any) -> Any:
    return flax.jax_utils.replicate(tree, self.devices)


def _first(tree: Any) -> Any:
  return jax.tree.map(lambda x: x[0], tree)


def make_launcher(kind: str, devices: Sequence[jax.Device], model, tx, *,
                  loss: str, num_items: int, num_negatives: int, protocol: str,
                  ks: tuple[int, ...]):
  """Builds the train and eval steps for `kind` ("mesh" or "pmap")."""
  axis = AXIS if kind == "pmap" else None
  train_step = steps.make_train_step(model, tx, loss=loss, num_items=num_items,
                                     num_negatives=num_negatives,
                                     axis_name=axis)
  eval_step = steps.make_eval_step(model, protocol=protocol, ks=ks,
                                   axis_name=axis)
  launcher = {"mesh": MeshLauncher, "pmap": PmapLauncher}[kind]
  return launcher(devices, train_step, eval_step)
