r"""Training steps per second against the device count, for both launchers.

  python -m experiments.benchmark_devices --devices=1,2,4,8

A small SASRec trains on the ML-1M sample with the global batch fixed, split
over 1, 2, 4 or 8 devices by `--parallel=pmap` and `--parallel=mesh`. On a CPU
the devices are simulated (`--xla_force_host_platform_device_count`, set here
before JAX starts) and share the machine's cores, so no speed-up is expected:
the numbers show the overhead of splitting, not a scaling curve. Prints a
table and writes JSON under benchmarks/.
"""

import os
import sys

_DEVICE_FLAG = "--xla_force_host_platform_device_count"
if _DEVICE_FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + f" {_DEVICE_FLAG}=8"
  )

# pylint: disable=g-import-not-at-top,wrong-import-position
import datetime
import json
import platform
import time

from absl import app
from absl import flags
import jax
import numpy as np

from data_prep import datasets
from linrec_jax import data
from linrec_jax.cli import failures
from linrec_jax.cli import flag_checks
from linrec_jax.layers.config import EncoderConfig
from linrec_jax.models import SASRec
from linrec_jax.training import evaluation
from linrec_jax.training import optimizer
from linrec_jax.training import sharding
from linrec_jax.training import steps

_DEVICES = flags.DEFINE_list("devices", ["1", "2", "4", "8"], "device counts")
_PARALLEL = flags.DEFINE_list("parallel", ["pmap", "mesh"], "launchers")
_STEPS = flags.DEFINE_integer("steps", 20, "steps per timed repeat")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed repeats per cell")
_WARMUP = flags.DEFINE_integer("warmup", 2, "untimed steps (compilation)")
_BATCH = flags.DEFINE_integer("batch_size", 64, "global batch size")
_MAX_LEN = flags.DEFINE_integer("max_len", 50, "sequence length")
_HIDDEN = flags.DEFINE_integer("hidden", 32, "model size")
_DATASET = flags.DEFINE_string("dataset", "ml-1m-sample", "dataset name")
_DATA_ROOT = flags.DEFINE_string("data_root", None, "raw datasets")
_PREPARED = flags.DEFINE_string("prepared_root", "prepared", "prepared arrays")
_OUTPUT = flags.DEFINE_string(
    "output", "benchmarks/devices_cpu.json", "where the JSON goes"
)


def run_cell(kind, num_devices, model, seqs, loader):
  """Compiles, warms up and times one launcher on `num_devices` devices."""
  tx = optimizer.make_optimizer(lr=1e-3)
  launcher = sharding.make_launcher(
      kind,
      sharding.select_devices(num_devices),
      model,
      tx,
      loss="ce",
      num_items=seqs.num_items,
      num_negatives=0,
      protocol="full",
      ks=(10,),
  )
  state = launcher.put_state(
      steps.create_train_state(model, tx, jax.random.PRNGKey(0), _MAX_LEN.value)
  )
  rng = launcher.put_replicated(jax.random.PRNGKey(1))
  batches = [
      launcher.put_batch(loader.batch(0, i)) for i in range(loader.num_batches)
  ]
  start = time.perf_counter()
  for i in range(_WARMUP.value):
    state, metrics = launcher.train_step(state, batches[i % len(batches)], rng)
  jax.block_until_ready(metrics)
  warmup_s = time.perf_counter() - start
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    for i in range(_STEPS.value):
      state, metrics = launcher.train_step(
          state, batches[i % len(batches)], rng
      )
    jax.block_until_ready(metrics)
    times.append((time.perf_counter() - start) / _STEPS.value)
  seconds = float(np.median(times))
  evaluator = evaluation.Evaluator(
      launcher,
      seqs,
      stage="test",
      protocol="full",
      max_len=_MAX_LEN.value,
      batch_size=_BATCH.value,
      pad_side="right",
      mask_token=None,
      seed=0,
  )
  evaluator(state.params)  # Compiles.
  start = time.perf_counter()
  evaluator(state.params)
  eval_s = time.perf_counter() - start
  return {
      "parallel": kind,
      "devices": num_devices,
      "steps_per_s": 1 / seconds,
      "ms_per_step": 1e3 * seconds,
      "ms_per_step_repeats": [1e3 * t for t in times],
      "compile_and_warmup_s": warmup_s,
      "eval_s": eval_s,
  }


def _main(argv):
  del argv
  data_dir = datasets.prepared_dir(
      _DATASET.value, _DATA_ROOT.value, _PREPARED.value
  )
  seqs = data.load(data_dir)
  loader = data.TrainBatches(
      seqs,
      mode="all",
      max_len=_MAX_LEN.value,
      batch_size=_BATCH.value,
      seed=0,
      windows_per_user=0,
  )
  model = SASRec(
      seqs.num_items,
      EncoderConfig(
          max_len=_MAX_LEN.value,
          hidden=_HIDDEN.value,
          layers=2,
          heads=2,
          ffn=2 * _HIDDEN.value,
          dropout=0.2,
          attention="linrec",
      ),
  )
  flag_checks.check_model_fits(model, _MAX_LEN.value, "--hidden, --max_len")
  load_before = os.getloadavg()[0]
  results = []
  print(
      f"{'parallel':>8} {'devices':>7} {'steps/s':>8} {'ms/step':>8} "
      f"{'compile s':>9} {'eval s':>7}"
  )
  for kind in _PARALLEL.value:
    for count in map(int, _DEVICES.value):
      cell = run_cell(kind, count, model, seqs, loader)
      results.append(cell)
      print(
          f"{kind:>8} {count:>7} {cell['steps_per_s']:>8.2f} "
          f"{cell['ms_per_step']:>8.1f} {cell['compile_and_warmup_s']:>9.1f}"
          f" {cell['eval_s']:>7.2f}",
          flush=True,
      )
  report = {
      "what": (
          "training steps per second of a small SASRec (LinRec "
          "attention) on the ML-1M sample, global batch fixed and split "
          "over the devices; simulated CPU devices share the machine's "
          "cores (no speed-up expected), and the CPU may be shared with "
          "other processes (see load_avg_1m)"
      ),
      "model": {
          "hidden": _HIDDEN.value,
          "layers": 2,
          "heads": 2,
          "max_len": _MAX_LEN.value,
          "num_items": seqs.num_items,
      },
      "batch_size": _BATCH.value,
      "steps": _STEPS.value,
      "repeats": _REPEATS.value,
      "timing": "median over repeats",
      "machine": {
          "platform": platform.platform(),
          "cpu_count": os.cpu_count(),
          "device_kind": jax.devices()[0].device_kind,
          "simulated_devices": jax.device_count(),
          "python": sys.version.split()[0],
          "jax": jax.__version__,
          "load_avg_1m_before": load_before,
          "load_avg_1m_after": os.getloadavg()[0],
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
      },
      "results": results,
  }
  os.makedirs(os.path.dirname(_OUTPUT.value) or ".", exist_ok=True)
  with open(_OUTPUT.value, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {_OUTPUT.value}")


def _check_flags():
  """Stops with one line naming the first bad flag."""
  flag_checks.check_size_lists("devices")
  flag_checks.check_choices("parallel", ("mesh", "pmap"))
  flag_checks.check_sizes("steps", "repeats", "batch_size", "max_len", "hidden")
  flag_checks.check_output("output", _OUTPUT.value)


def main(argv):
  failures.quiet_info_logs()
  with failures.user_errors():
    _check_flags()
    _main(argv)


if __name__ == "__main__":
  app.run(main)
