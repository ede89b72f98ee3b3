"""Tests of linrec_jax.training.sharding: data parallelism on 1, 2, 4 and 8 devices.

A JAX process fixes its device count at start, so the multi-device checks run
`tests/multidevice_check.py` (or `experiments.train`) in a subprocess with
`--xla_force_host_platform_device_count` simulated CPU devices.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from linrec_jax.training import sharding

REPO = pathlib.Path(__file__).resolve().parent.parent
CHECK = REPO / "tests" / "multidevice_check.py"
SAMPLE = "ml-1m-sample/ml-1m.txt"
TIMEOUT = 900  # Seconds; generous because the CPU may be shared.


def run_check(*args: str) -> dict:
  """Runs a mode of multidevice_check.py; returns its JSON report."""
  process = subprocess.run(
      [sys.executable, str(CHECK), *args],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=TIMEOUT,
      check=False,
  )
  lines = process.stdout.strip().splitlines()
  assert lines, process.stderr[-3000:]
  result = json.loads(lines[-1])
  assert process.returncode == 0 and not result["failures"], (
      result["failures"],
      result["report"],
      process.stderr[-2000:],
  )
  return result["report"]


@pytest.fixture(scope="module")
def prepared_root(data_file, tmp_path_factory) -> pathlib.Path:
  """The ML-1M sample prepared once, where `--prepared_root` finds it."""
  from data_prep import datasets  # pylint: disable=import-outside-toplevel

  raw = data_file(SAMPLE)
  root = tmp_path_factory.mktemp("prepared")
  datasets.prepared_dir("ml-1m-sample", str(raw.parent.parent), str(root))
  return root


def test_check_divisible_names_the_flag_and_the_fix():
  sharding.check_divisible(32, 8, "batch_size")
  with pytest.raises(
      ValueError, match=r"--batch_size=18 .* 4 devices; use a " r"multiple of 4"
  ):
    sharding.check_divisible(18, 4, "batch_size")


def test_select_devices_takes_the_first_n():
  available = jax.devices()
  assert sharding.select_devices(0) == available
  assert sharding.select_devices(1) == available[:1]
  with pytest.raises(ValueError, match="--devices=.* available"):
    sharding.select_devices(len(available) + 1)


@pytest.mark.parametrize(
    "launcher", [sharding.MeshLauncher, sharding.PmapLauncher]
)
def test_both_launchers_have_the_written_interface(launcher):
  step = lambda *args: args
  made = launcher(jax.devices()[:1], step, step)
  assert isinstance(made, sharding.Launcher)
  assert (made.num_devices, made.num_local_devices) == (1, 1)


def _check_launchers(counts, launchers=("pmap", "mesh")):
  # K steps with dropout on (randomness is per example), full-ranking
  # evaluation sums, the gradient against an independent value of the
  # global mean loss, and one trace per step function; also the sampled
  # loss with gradient accumulation over 2 chunks of each device's rows
  # (on 4).
  report = run_check(
      "steps",
      "--device_counts=" + ",".join(map(str, counts)),
      "--launchers=" + ",".join(launchers),
  )
  assert {key.split("/")[0] for key in report} == {*launchers, "grad"}
  assert all(f"{kind}/{n}/ce" in report for kind in launchers for n in counts)
  assert all(f"grad/{kind}" in report for kind in launchers)
  assert all(f"{kind}/4/sampled/x2" in report for kind in launchers)


# Training on one device goes through the mesh launcher in every run of
# the other tests; here the mesh, the launcher training uses on several
# devices, runs on 4. pmap on 4 (about a minute) is in the slow set, as are
# all device counts (the slow test below).
@pytest.mark.parametrize(
    "launcher", [pytest.param("pmap", marks=pytest.mark.slow), "mesh"]
)
def test_launcher_on_4_devices_matches_one_device(launcher):
  _check_launchers((4,), (launcher,))


@pytest.mark.slow
def test_launchers_on_1_2_4_8_devices_match_one_device():
  _check_launchers((1, 2, 4, 8))


# Checkpoints are plain arrays (checkpointing_test.py) and a killed run
# resumes to the same metrics (experiments_train_test.py); this one changes
# the device count too, three runs of two epochs: slow.
@pytest.mark.slow
def test_save_on_4_devices_resume_on_2_matches_a_2_device_run(
    prepared_root, tmp_path
):
  report = run_check(
      "resume",
      f"--data_dir={prepared_root / 'ml-1m-sample'}",
      f"--workdir={tmp_path}",
  )
  assert report["traces"] == [1, 1, 1]
  assert report["metric_diff"] <= 1e-5 and report["loss_diff"] <= 1e-5


def run_train(
    flags: list[str], *, devices: int, env=None, **popen
) -> subprocess.Popen:
  """Starts `python -m experiments.train` with `devices` CPU devices."""
  env = dict(os.environ, **(env or {}))
  env["XLA_FLAGS"] = (
      f"--xla_force_host_platform_device_count={devices} "
      "--xla_backend_optimization_level=0"
  )
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.train", *flags],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      **popen,
  )


def finish(process: subprocess.Popen) -> str:
  output, _ = process.communicate(timeout=TIMEOUT)
  assert process.returncode == 0, output[-3000:]
  return output


def sample_flags(prepared_root, data_dir, workdir) -> list[str]:
  """A few steps of the tiny preset with dropout off, lr large enough to
  move the metrics."""
  return [
      "--dataset=ml-1m-sample",
      "--preset=tiny",
      "--max_steps=8",
      "--dropout=0",
      "--lr=0.01",
      f"--prepared_root={prepared_root}",
      f"--data_root={data_dir}",
      f"--workdir={workdir}",
  ]


def outcome(workdir: pathlib.Path) -> dict:
  """The test and validation metrics and the logged training losses."""
  results = json.loads((workdir / "results.json").read_text())
  losses = [
      json.loads(line)["train_loss"]
      for line in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  return {
      "test": results["test"],
      "valid": results["valid"],
      "train_loss": losses,
  }


def assert_same_outcome(got: dict, want: dict) -> None:
  for stage in ("test", "valid"):
    assert got[stage] == pytest.approx(want[stage], abs=1e-5), stage
  assert got["train_loss"] == pytest.approx(want["train_loss"], abs=1e-5)


@pytest.mark.slow
def test_cli_on_4_devices_ends_with_the_metrics_of_1_device(
    prepared_root, data_dir, tmp_path
):
  outcomes = {}
  for devices, parallel in ((1, "mesh"), (4, "pmap"), (4, "mesh")):
    workdir = tmp_path / f"{parallel}{devices}"
    output = finish(
        run_train(
            sample_flags(prepared_root, data_dir, workdir)
            + [f"--devices={devices}", f"--parallel={parallel}"],
            devices=4,
        )
    )
    assert f"{devices} x cpu" in output.lower(), output[-2000:]
    outcomes[devices, parallel] = outcome(workdir)
  reference = outcomes[1, "mesh"]
  assert reference["test"]["hit@20"] > 0  # The metrics did move.
  assert_same_outcome(outcomes[4, "pmap"], reference)
  assert_same_outcome(outcomes[4, "mesh"], reference)
