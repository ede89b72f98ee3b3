r"""Multi-device checks, run in a subprocess with simulated CPU devices.

The device count of a JAX process is fixed when JAX starts, so the tests of
`sharding_test.py` and `multihost_test.py` run this script in a fresh
interpreter; it sets `XLA_FLAGS` before importing JAX. Each mode prints one
JSON line and exits non-zero on a failed check.

  python tests/multidevice_check.py steps
  python tests/multidevice_check.py resume --data_dir=DIR --workdir=DIR
  python tests/multidevice_check.py multihost --process_id=0 \
      --num_processes=2 --port=PORT

Modes:
  steps:     K training steps with both launchers on 1, 2, 4 and 8 devices
             equal single-device training (dropout on: randomness is per
             example); evaluation sums agree; the distributed gradient is the
             gradient of the global mean loss, computed independently here;
             the sampled loss with gradient accumulation (2 chunks per
             device) on 4 devices too; each step function is traced once.
  resume:    `train_and_evaluate` saves on 4 devices and is interrupted,
             resumes on 2, and ends with the metrics of an uninterrupted
             2-device run; the step is traced once per run (two epochs).
  multihost: one of two processes (2 CPU devices each) on 127.0.0.1; both
             launchers train K steps, each process feeding only its rows,
             and match single-device training done in the same process.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

_DEVICES = {"steps": 8, "resume": 8, "multihost": 2}


def _parse():
  parser = argparse.ArgumentParser()
  parser.add_argument("mode", choices=sorted(_DEVICES))
  parser.add_argument("--data_dir")
  parser.add_argument("--workdir")
  parser.add_argument("--process_id", type=int, default=0)
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument(
      "--device_counts",
      default="1,2,4,8",
      help="steps mode: device counts of the ce cases",
  )
  parser.add_argument(
      "--launchers",
      default="pmap,mesh",
      help="steps mode: the launchers checked",
  )
  return parser.parse_args()


ARGS = _parse()
# Fewer LLVM passes: the tiny programs here compile about twice as fast.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    " --xla_force_host_platform_device_count="
    f"{_DEVICES[ARGS.mode]}"
)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import chex
import reference_loss
import jax
import numpy as np
import optax

from linrec_jax.constants import PAD_ID
from linrec_jax.layers.config import EncoderConfig
from linrec_jax.models import SASRec
from linrec_jax.training import sharding
from linrec_jax.training import steps

NUM_ITEMS, MAX_LEN, BATCH, STEPS = 40, 6, 16, 3
KS = (5, 10)
TOLERANCE = 1e-5


def _model(dropout: float) -> SASRec:
  return SASRec(
      NUM_ITEMS,
      EncoderConfig(
          max_len=MAX_LEN,
          hidden=16,
          layers=1,
          heads=2,
          ffn=32,
          dropout=dropout,
          attention="linrec",
      ),
  )


def _train_batches(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
  """Right-padded next-item batches of random lengths (mode `all`)."""
  rng = np.random.default_rng(seed)
  batches = []
  for _ in range(count):
    lengths = rng.integers(1, MAX_LEN + 1, BATCH)
    real = np.arange(MAX_LEN) < lengths[:, None]
    items = rng.integers(1, NUM_ITEMS + 1, (BATCH, MAX_LEN + 1))
    batches.append(
        {
            "inputs": np.where(real, items[:, :-1], PAD_ID).astype(np.int32),
            "positions": np.tile(
                np.arange(MAX_LEN, dtype=np.int32), (BATCH, 1)
            ),
            "targets": np.where(real, items[:, 1:], PAD_ID).astype(np.int32),
        }
    )
  return batches


def _eval_batch(seed: int = 1) -> dict[str, np.ndarray]:
  """One full-ranking batch whose last rows only pad it."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, MAX_LEN + 1, BATCH)
  valid = np.arange(BATCH) < BATCH - 3
  real = (np.arange(MAX_LEN) < lengths[:, None]) & valid[:, None]
  return {
      "inputs": np.where(
          real, rng.integers(1, NUM_ITEMS + 1, (BATCH, MAX_LEN)), PAD_ID
      ).astype(np.int32),
      "positions": np.where(valid, lengths - 1, 0).astype(np.int32),
      "targets": np.where(
          valid, rng.integers(1, NUM_ITEMS + 1, BATCH), PAD_ID
      ).astype(np.int32),
      "valid": valid,
      "users": np.where(valid, np.arange(1, BATCH + 1), 0).astype(np.int32),
  }


def _rows(batch, process: int, processes: int):
  size = BATCH // processes
  return {k: v[process * size : (process + 1) * size] for k, v in batch.items()}


def _max_diff(a, b) -> float:
  return max(
      float(np.max(np.abs(np.asarray(x, np.float64) - y)))
      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


def _reference(model, tx, batches, eval_batch, *, loss="ce"):
  """Single-device training: `jax.jit` of the step without an axis name."""
  device = jax.local_devices()[0]
  state = jax.device_put(
      steps.create_train_state(model, tx, jax.random.PRNGKey(0), MAX_LEN),
      device,
  )
  step = jax.jit(
      steps.make_train_step(
          model, tx, loss=loss, num_items=NUM_ITEMS, num_negatives=8
      )
  )
  rng = jax.random.PRNGKey(1)
  for batch in batches:
    state, _ = step(state, jax.device_put(batch, device), rng)
  evaluate = jax.jit(steps.make_eval_step(model, protocol="full", ks=KS))
  sums = jax.device_get(
      evaluate(state.params, jax.device_put(eval_batch, device))
  )
  return jax.device_get(state), sums


def _distributed(
    kind, devices, model, tx, batches, eval_batch, *, loss="ce", microbatches=1
):
  """The same training through a launcher; each step function traced once."""
  axis = sharding.AXIS if kind == "pmap" else None
  # chex counts traces by the wrapping call site; each launcher starts at 0.
  chex.clear_trace_counter()
  train_step = chex.assert_max_traces(
      steps.make_train_step(
          model,
          tx,
          loss=loss,
          num_items=NUM_ITEMS,
          num_negatives=8,
          microbatches=microbatches,
          axis_name=axis,
      ),
      n=1,
  )
  eval_step = chex.assert_max_traces(
      steps.make_eval_step(model, protocol="full", ks=KS, axis_name=axis), n=1
  )
  launcher = {"mesh": sharding.MeshLauncher, "pmap": sharding.PmapLauncher}[
      kind
  ](devices, train_step, eval_step)
  shard = (jax.process_index(), jax.process_count())
  state = launcher.put_state(
      steps.create_train_state(model, tx, jax.random.PRNGKey(0), MAX_LEN)
  )
  rng = launcher.put_replicated(jax.random.PRNGKey(1))
  for batch in batches:
    state, _ = launcher.train_step(
        state, launcher.put_batch(_rows(batch, *shard)), rng
    )
  sums = None
  for _ in range(2):  # A second evaluation reuses the compiled step.
    sums = launcher.eval_step(
        state.params, launcher.put_batch(_rows(eval_batch, *shard))
    )
  return launcher.get_state(state), jax.device_get(sums)


def check_steps() -> dict:
  """Launchers on 1..8 devices against single-device training."""
  failures, report = [], {}
  model, tx = _model(dropout=0.1), optax.adam(1e-2)
  batches, eval_batch = _train_batches(STEPS), _eval_batch()
  counts = [int(n) for n in ARGS.device_counts.split(",")]
  kinds = ARGS.launchers.split(",")
  cases = [(kind, n, "ce", 1) for kind in kinds for n in counts]
  # The sampled loss (negatives drawn per example) with gradient
  # accumulation, 2 chunks of each device's 4 rows: the same update as the
  # whole batch on one device.
  cases += [(kind, 4, "sampled", 2) for kind in kinds]
  references = {}
  for kind, n, loss, microbatches in cases:
    if loss not in references:
      references[loss] = _reference(model, tx, batches, eval_batch, loss=loss)
    ref_state, ref_sums = references[loss]
    start = time.perf_counter()
    state, sums = _distributed(
        kind,
        jax.devices()[:n],
        model,
        tx,
        batches,
        eval_batch,
        loss=loss,
        microbatches=microbatches,
    )
    diff = _max_diff(state.params, ref_state.params)
    eval_diff = _max_diff(sums, ref_sums)
    name = f"{kind}/{n}/{loss}" + (
        f"/x{microbatches}" if microbatches > 1 else ""
    )
    report[name] = {
        "params": diff,
        "eval": eval_diff,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if not diff <= TOLERANCE or not eval_diff <= TOLERANCE:
      failures.append(
          f"{name}: parameters differ by "
          f"{diff:.2e}, evaluation sums by {eval_diff:.2e}"
      )
    if int(state.step) != STEPS:
      failures.append(f"{name}: step {int(state.step)}")

  # SGD with rate 1: params_before - params_after is the applied gradient.
  model, tx = _model(dropout=0.0), optax.sgd(1.0)
  batch = batches[0]
  params = steps.create_train_state(
      model, tx, jax.random.PRNGKey(0), MAX_LEN
  ).params
  expected = reference_loss.global_mean_loss_grads(model, params, batch)
  for kind in kinds:
    state, _ = _distributed(
        kind, jax.devices()[:4], model, tx, [batch], eval_batch
    )
    applied = jax.tree.map(np.subtract, jax.device_get(params), state.params)
    ratios = [
        float(np.vdot(a, e) / np.vdot(e, e))
        for a, e in zip(jax.tree.leaves(applied), jax.tree.leaves(expected))
        if np.any(e)
    ]
    diff = _max_diff(applied, expected)
    report[f"grad/{kind}"] = {
        "diff": diff,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }
    if diff > 1e-5 or not all(abs(r - 1) < 1e-3 for r in ratios):
      failures.append(
          f"{kind} gradient is not that of the global mean loss: "
          f"max diff {diff:.2e}, ratios {min(ratios):.4f}.."
          f"{max(ratios):.4f}"
      )
  return {"report": report, "failures": failures}


def check_resume(data_dir: str, workdir: str) -> dict:
  """Save on 4 devices, resume on 2 == uninterrupted on 2; one trace each."""
  # pylint: disable=import-outside-toplevel
  from linrec_jax.training import train
  from linrec_jax.training.config import TrainConfig

  traces = []
  make_train_step = steps.make_train_step

  def counted_train_step(*args, **kwargs):
    step = make_train_step(*args, **kwargs)

    def traced(*step_args):
      traces[-1] += 1
      return step(*step_args)

    return traced

  steps.make_train_step = counted_train_step

  class Interrupt(Exception):
    pass

  def interrupt_at(line_start):
    def report(line):
      if line.startswith(line_start):
        raise Interrupt(line)

    return report

  # Dropout on: per-example randomness makes it independent of devices.
  config = TrainConfig(
      hidden=16,
      ffn=32,
      layers=1,
      heads=2,
      dropout=0.1,
      lr=5e-3,
      batch_size=16,
      epochs=2,
      patience=5,
      max_len=20,
      eval_batch_size=64,
      log_every_steps=5,
      checkpoint_every_steps=5,
      parallel="mesh",
  )
  runs = {}
  for name, devices, parallel, report in (
      ("straight", 2, "mesh", lambda line: None),
      ("interrupted", 4, "mesh", interrupt_at("step 10/")),
      ("interrupted", 2, "pmap", lambda line: None),
  ):
    traces.append(0)
    run_config = dataclasses.replace(config, devices=devices, parallel=parallel)
    try:
      runs[name] = train.train_and_evaluate(
          run_config, data_dir, os.path.join(workdir, name), report=report
      )
    except Interrupt:
      pass
  failures = []
  straight, resumed = runs["straight"], runs["interrupted"]
  diff = max(
      abs(straight[stage][name] - resumed[stage][name])
      for stage in ("valid", "test")
      for name in straight[stage]
  )
  if not diff <= TOLERANCE:
    failures.append(f"resumed on 2 devices: metrics differ by {diff:.2e}")
  losses = []
  for name in ("straight", "interrupted"):
    with open(os.path.join(workdir, name, "metrics.jsonl")) as f:
      losses.append([json.loads(line)["train_loss"] for line in f])
  loss_diff = float(np.max(np.abs(np.subtract(*losses))))
  if not loss_diff <= TOLERANCE:
    failures.append(f"resumed on 2 devices: train losses {losses}")
  if straight["steps"] != resumed["steps"]:
    failures.append(f"steps {straight['steps']} != {resumed['steps']}")
  if any(count != 1 for count in traces):
    failures.append(f"train step traced {traces} times (want once per run)")
  return {
      "report": {
          "metric_diff": diff,
          "loss_diff": loss_diff,
          "traces": traces,
          "steps": resumed["steps"],
          "test": resumed["test"],
      },
      "failures": failures,
  }


def check_multihost(process_id: int, num_processes: int, port: int) -> dict:
  """This process's part of a two-process run; compares with one device."""
  jax.distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id)
  failures, report = [], {}
  model, tx = _model(dropout=0.1), optax.adam(1e-2)
  batches, eval_batch = _train_batches(STEPS), _eval_batch()
  ref_state, ref_sums = _reference(model, tx, batches, eval_batch)
  report["devices"] = [jax.device_count(), jax.local_device_count()]
  for kind in ("mesh", "pmap"):
    state, sums = _distributed(
        kind, jax.devices(), model, tx, batches, eval_batch
    )
    diff = _max_diff(state.params, ref_state.params)
    eval_diff = _max_diff(sums, ref_sums)
    report[kind] = {"params": diff, "eval": eval_diff}
    if not diff <= TOLERANCE or not eval_diff <= TOLERANCE:
      failures.append(
          f"{kind} over {num_processes} processes: parameters "
          f"differ by {diff:.2e}, evaluation by {eval_diff:.2e}"
      )
  jax.distributed.shutdown()
  return {"report": report, "failures": failures}


def main():
  if ARGS.mode == "steps":
    result = check_steps()
  elif ARGS.mode == "resume":
    result = check_resume(ARGS.data_dir, ARGS.workdir)
  else:
    result = check_multihost(ARGS.process_id, ARGS.num_processes, ARGS.port)
  print(json.dumps(result))
  sys.exit(1 if result["failures"] else 0)


if __name__ == "__main__":
  main()
