"""Two processes on 127.0.0.1 train as one job (JAX's CPU collectives, gloo).

Each process has 2 simulated CPU devices, calls `jax.distributed.initialize`
with the same coordinator and feeds only its rows of every batch.
"""

import collections
import json
import socket
import subprocess
import sys

import pytest

from linrec_jax import workdir
from linrec_jax.training import reporting

# pylint: disable=unused-import
from sharding_test import CHECK
from sharding_test import REPO
from sharding_test import TIMEOUT
from sharding_test import assert_same_outcome
from sharding_test import finish
from sharding_test import outcome
from sharding_test import prepared_root
from sharding_test import run_train
from sharding_test import sample_flags

PROCESSES = 2


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# Two JAX processes that compile and train the sample set (about a minute
# on 2 cores): in the slow set, `make test-slow`.
@pytest.mark.slow
def test_two_processes_train_like_one_device():
  port = free_port()
  processes = [
      subprocess.Popen(
          [
              sys.executable,
              str(CHECK),
              "multihost",
              f"--process_id={index}",
              f"--num_processes={PROCESSES}",
              f"--port={port}",
          ],
          cwd=REPO,
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
      )
      for index in range(PROCESSES)
  ]
  for index, process in enumerate(processes):
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    lines = stdout.strip().splitlines()
    assert lines, stderr[-3000:]
    result = json.loads(lines[-1])
    assert process.returncode == 0 and not result["failures"], (
        index,
        result,
        stderr[-2000:],
    )
    assert result["report"]["devices"] == [4, 2]
    assert set(result["report"]) == {"devices", "mesh", "pmap"}


@pytest.mark.slow
def test_two_process_run_writes_once_and_matches_one_device(
    prepared_root, data_dir, tmp_path
):
  single = tmp_path / "single"
  finish(
      run_train(
          sample_flags(prepared_root, data_dir, single) + ["--devices=1"],
          devices=1,
      )
  )
  shared = tmp_path / "two_processes"
  for parallel in ("mesh", "pmap"):
    # The second command finds the finished run: both processes restore it
    # from the checkpoint the first wrote, and only evaluate.
    port = free_port()
    processes = [
        run_train(
            sample_flags(prepared_root, data_dir, shared)
            + [
                f"--parallel={parallel}",
                f"--coordinator_address=127.0.0.1:{port}",
                f"--num_processes={PROCESSES}",
                f"--process_id={index}",
            ],
            devices=2,
        )
        for index in range(PROCESSES)
    ]
    outputs = [finish(process) for process in processes]
    assert "test: hit@5" in outputs[0]
    assert "test: hit@5" not in outputs[1]  # Only process 0 reports.
    assert_same_outcome(outcome(shared), outcome(single))
    if parallel == "mesh":  # Every file written once, by process 0.
      names = {path.name for path in shared.iterdir()}
      expected = {
          workdir.CHECKPOINTS_DIR,
          workdir.CONFIG_FILE,
          workdir.CONSOLE_FILE,
          workdir.CURVE_FILE,
          workdir.LOCK_FILE,
          workdir.METRICS_FILE,
          workdir.RESULTS_FILE,
      }
      if reporting.SummaryWriter is not None:  # An optional dependency.
        expected.add(workdir.TENSORBOARD_DIR)
        # One events file per directory (the run's, and its hparams/).
        events = collections.Counter(
            path.parent.name
            for path in (shared / workdir.TENSORBOARD_DIR).rglob("events.out.*")
        )
        assert events == {"tensorboard": 1, "hparams": 1}, events
      assert names == expected, sorted(names)
  assert "resumed from step 8" in outputs[0]
  assert "resumed from step" not in outputs[1]  # Said once, by process 0.
