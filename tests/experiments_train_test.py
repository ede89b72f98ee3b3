"""End-to-end tests of `python -m experiments.train` on the 200-user sample.

The training runs are subprocesses, so that one can be killed with SIGKILL
at any moment, as a crash or a pre-empted machine would; bad flags are
checked in this process (fast) and once in a subprocess with three devices.
"""

import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from linrec_jax.training import reporting

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE_FILE = "ml-1m-sample/ml-1m.txt"
RUN_TIMEOUT_S = 300
# 12 steps per epoch (200 users, batch 16); the run stops at step 30 of the
# third epoch, with a checkpoint every 3 steps and at every epoch's end.
SMALL_RUN = (
    "--dataset=ml-1m-sample",
    "--preset=tiny",
    "--epochs=3",
    "--max_steps=30",
    "--patience=3",
    "--lr=0.01",
    "--max_len=20",
    "--hidden=16",
    "--batch_size=16",
    "--eval_batch_size=64",
    "--checkpoint_every_steps=3",
    "--log_every_steps=1",
    # Dropout makes every step depend on its random key too.
    "--dropout=0.1",
)
FINAL_STEP = 30
STEPS_PER_EPOCH = 12
# First bytes of a pickle of protocol 2 or newer: PROTO opcode, version.
_PICKLE_HEADS = tuple(bytes([0x80, v]) for v in range(2, 6))
_KEPT = {f"{m}@{k}" for m in ("hit", "ndcg", "mrr") for k in (5, 10, 20)}
# Both protocols: history kept, history excluded, and seen items in the top 10.
METRICS = (
    _KEPT | {name + "_nohist" for name in _KEPT} | {"seen@10", "seen_input@10"}
)


def _env(**extra) -> dict[str, str]:
  env = dict(os.environ)
  # One device, compiled as the suite compiles (conftest.py).
  env.update(
      JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_backend_optimization_level=0"
  )
  env.update(extra)
  return env


def _command(*args) -> list[str]:
  return [sys.executable, "-m", "experiments.train", *args]


def _run(*args, env=None) -> subprocess.CompletedProcess:
  return subprocess.run(
      _command(*args),
      cwd=REPO_ROOT,
      env=env or _env(),
      capture_output=True,
      text=True,
      timeout=RUN_TIMEOUT_S,
  )


def _checked(process: subprocess.CompletedProcess):
  assert process.returncode == 0, process.stdout[-3000:] + process.stderr
  return process


@pytest.fixture(scope="module")
def sample_args(data_file, tmp_path_factory):
  """`args(workdir)`: the flags of a small run on the sample into workdir."""
  raw = data_file(SAMPLE_FILE)
  prepared = tmp_path_factory.mktemp("prepared")
  data_root = str(raw.parent.parent)

  def args(workdir, *more):
    return (
        *SMALL_RUN,
        f"--workdir={workdir}",
        f"--data_root={data_root}",
        f"--prepared_root={prepared}",
        *more,
    )

  return args


@pytest.fixture(scope="module")
def reference(sample_args, tmp_path_factory):
  """The small run, uninterrupted: (workdir, its completed process)."""
  workdir = tmp_path_factory.mktemp("uninterrupted")
  return workdir, _checked(_run(*sample_args(workdir)))


def _results(workdir) -> dict:
  return json.loads((pathlib.Path(workdir) / "results.json").read_text())


def _history(workdir) -> list[dict]:
  """metrics.jsonl without the wall-clock times."""
  lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  records = [json.loads(line) for line in lines]
  for record in records:
    record.pop("seconds")
    record.pop("valid_seconds", None)
  return records


def _assert_metrics_in_range(metrics: dict[str, float]):
  assert set(metrics) == METRICS
  assert 0.0 <= metrics["seen_input@10"] <= metrics["seen@10"] <= 10.0
  for name in _KEPT:
    # Taking seen items out of the ranking can only lift each target.
    assert 0.0 <= metrics[name] <= metrics[name + "_nohist"] + 1e-6, name
    assert metrics[name + "_nohist"] <= 1.0, name
  for k in (5, 10, 20):
    assert metrics[f"mrr@{k}"] <= metrics[f"ndcg@{k}"] <= metrics[f"hit@{k}"]
  assert metrics["hit@5"] <= metrics["hit@10"] <= metrics["hit@20"]


def _assert_same_outcome(workdir, reference_workdir):
  results, expected = _results(workdir), _results(reference_workdir)
  for key in ("valid", "test", "best_epoch", "epochs_run", "steps"):
    assert results[key] == expected[key], key
  assert _history(workdir) == _history(reference_workdir)


def _steps(checkpoints) -> list[int]:
  return sorted(
      int(p.name)
      for p in pathlib.Path(checkpoints).iterdir()
      if p.name.isdigit()
  )


def test_small_run_writes_checkpoints_and_results(reference):
  workdir, process = reference
  results = _results(workdir)
  for stage in ("valid", "test"):
    _assert_metrics_in_range(results[stage])
  assert results["steps"] == FINAL_STEP
  assert results["steps_per_epoch"] == STEPS_PER_EPOCH
  assert results["epochs_run"] == 3  # two full epochs and 6 steps of one
  assert results["config"]["max_steps"] == FINAL_STEP
  assert results["eval_protocol"].startswith("full ranking")
  # Two checkpoints are kept: the final step and the one before.
  assert _steps(workdir / "checkpoints") == [FINAL_STEP - 3, FINAL_STEP]
  assert not (workdir / "checkpoints_damaged").exists()
  # Arrays (OCDBT files) and JSON only: no pickle anywhere.
  for path in (workdir / "checkpoints").rglob("*"):
    if path.is_file():
      assert path.suffix not in (".pkl", ".pickle"), path
      assert path.read_bytes()[:2] not in _PICKLE_HEADS, path
  meta = json.loads(
      (
          workdir / "checkpoints" / str(FINAL_STEP) / "meta" / "metadata"
      ).read_text()
  )
  assert meta["step"] == FINAL_STEP and meta["progress"]["finished"]
  history = _history(workdir)
  assert [r["step"] for r in history] == [12, 24, 30]
  assert all(set(r["valid"]) == METRICS for r in history)
  config = json.loads((workdir / "config.json").read_text())
  assert config["dataset"] == "ml-1m-sample"
  assert config["config"]["hidden"] == 16
  if reporting.SummaryWriter is not None:  # An optional dependency.
    assert list((workdir / "tensorboard").iterdir())
  assert f"step {FINAL_STEP}/{FINAL_STEP}" in process.stdout
  assert "test: hit@5" in process.stdout


def test_rerun_of_a_finished_run_only_evaluates(
    reference, sample_args, tmp_path
):
  workdir, _ = reference
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  process = _checked(_run(*sample_args(copy)))
  assert f"resumed from step {FINAL_STEP}" in process.stdout
  assert "step 1/" not in process.stdout  # no training step ran again
  _assert_same_outcome(copy, workdir)


def test_rerun_with_another_model_stops_and_keeps_the_checkpoints(
    reference, sample_args, tmp_path
):
  copy = tmp_path / "copy"
  shutil.copytree(reference[0], copy)
  config_before = (copy / "config.json").read_text()
  process = _run(
      *sample_args(copy, "--hidden=32", "--attention=softmax", "--seed=3")
  )  # the last flag wins
  assert process.returncode == 1
  assert process.stderr.count("\n") == 1, process.stderr  # One line.
  assert process.stderr.startswith(
      f"error: --workdir={copy} holds a run of another configuration: "
      "--attention: 'linrec' there, 'softmax' here; --hidden: 16 there, 32 "
      "here; --seed: 2000 there, 3 here."
  ), process.stderr
  assert _steps(copy / "checkpoints") == [FINAL_STEP - 3, FINAL_STEP]
  assert not (copy / "checkpoints_damaged").exists()
  assert _results(copy) == _results(reference[0])
  assert (copy / "config.json").read_text() == config_before


def _kill_when(
    args, should_kill, delay_s: float, cache: pathlib.Path
) -> tuple[int, str]:
  """Starts a run and SIGKILLs it `delay_s` after a stdout line for which
  `should_kill(line)` holds; returns its exit status and what it printed.

  A process killed while it writes an entry of a compilation cache leaves
  it truncated, so the run compiles into `cache`, a directory of its own
  holding hard links to the suite's entries (conftest.py) as they were
  at its first use: the programs of the uninterrupted run are found there,
  and whatever a killed run writes stays in `cache`.
  """
  if not cache.exists():
    shared = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if shared and os.path.isdir(shared):
      shutil.copytree(shared, cache, copy_function=_link_or_copy)
  env = _env(JAX_COMPILATION_CACHE_DIR=str(cache))
  process = subprocess.Popen(
      _command(*args),
      cwd=REPO_ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,
      text=True,
  )
  watchdog = threading.Timer(RUN_TIMEOUT_S, process.kill)
  watchdog.start()
  printed = []
  try:
    for line in process.stdout:
      printed.append(line)
      if should_kill(line):
        time.sleep(delay_s)
        process.send_signal(signal.SIGKILL)
        break
    process.wait()
  finally:
    watchdog.cancel()
    process.stdout.close()
  return process.returncode, "".join(printed)


def _link_or_copy(source: str, target: str) -> None:
  try:
    os.link(source, target)
  except OSError:  # another file system
    shutil.copy2(source, target)


def _step_of(line: str) -> int:
  """N of a progress line `step N/total ...`, else -1."""
  match = re.match(r"step (\d+)/", line)
  return int(match.group(1)) if match else -1


def test_killed_run_resumes_to_the_same_metrics(
    reference, sample_args, tmp_path
):
  workdir = tmp_path / "killed"
  args = sample_args(workdir)
  cache = tmp_path / "compilations"
  # Killed between the checkpoints of steps 6 and 9 ...
  status, printed = _kill_when(
      args, lambda line: _step_of(line) == 7, 0.0, cache
  )
  assert status == -signal.SIGKILL, printed
  # ... then, resumed from step 6, around the save at the end of epoch 1.
  status, printed = _kill_when(
      args, lambda line: line.startswith("epoch 1 "), 0.05, cache
  )
  assert status == -signal.SIGKILL, printed
  assert "resumed from step 6" in printed
  assert not (workdir / "results.json").exists()
  process = _checked(_run(*args))
  assert "resumed from step" in process.stdout
  _assert_same_outcome(workdir, reference[0])


@pytest.mark.slow
def test_run_killed_at_random_moments_resumes_to_the_same_metrics(
    reference, sample_args, tmp_path
):
  workdir = tmp_path / "killed"
  args = sample_args(workdir)
  moments = random.Random(0)
  kills = 0
  for target in sorted(moments.sample(range(1, FINAL_STEP - 3), 5)):
    # Up to 0.5 s after the first step line at or past `target`: inside a
    # step, a save or an evaluation.
    status, printed = _kill_when(
        args,
        lambda line, t=target: _step_of(line) >= t,
        moments.uniform(0.0, 0.5),
        tmp_path / "compilations",
    )
    if status == 0:  # finished before the kill: nothing left to interrupt
      break
    assert status == -signal.SIGKILL, printed
    kills += 1
  assert kills >= 2
  _checked(_run(*args))
  _assert_same_outcome(workdir, reference[0])


def test_damaged_latest_checkpoint_is_reported_and_previous_used(
    reference, sample_args, tmp_path
):
  workdir = tmp_path / "damaged"
  shutil.copytree(reference[0], workdir)
  (workdir / "results.json").unlink()
  latest = workdir / "checkpoints" / str(FINAL_STEP)
  data_files = [
      p
      for p in (latest / "arrays").rglob("*")
      if p.is_file() and p.parent.name == "d"
  ]
  assert data_files
  for path in data_files:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
  process = _checked(_run(*sample_args(workdir)))
  # One line says what was found and what was used; no traceback anywhere.
  [line] = [
      line for line in process.stdout.splitlines() if "is damaged" in line
  ]
  assert f"checkpoints/{FINAL_STEP} is damaged" in line
  assert f"moved to {workdir}/checkpoints_damaged/{FINAL_STEP}" in line
  assert line.endswith(
      f"resumed from step {FINAL_STEP - 3} ({workdir}/checkpoints)"
  )
  assert process.stderr == "", process.stderr
  assert _steps(workdir / "checkpoints_damaged") == [FINAL_STEP]
  _assert_same_outcome(workdir, reference[0])


# Bad flags: (command line, the flag the message must name).
BAD_FLAGS = [
    (["--dataset=no-such-set"], "dataset"),
    (["--data_root=/no/such/dir"], "data_root"),
    (["--attention=fancy"], "attention"),
    (["--model=gpt"], "model"),
    (["--hidden=0"], "hidden"),
    (["--batch_size=0"], "batch_size"),
    (["--max_len=-5"], "max_len"),
    (["--eval_batch_size=0"], "eval_batch_size"),
    (["--hidden=16", "--heads=3"], "heads"),
    (["--attention=linrec_seqnorm"], "causal"),
    (["--model=bert4rec", "--train_mode=all"], "train_mode"),
    (["--model=bert4rec", "--causal"], "causal"),
    (["--train_mode=cloze"], "train_mode"),
    (["--devices=4096"], "devices"),
    (["--mask_prob=1.5"], "mask_prob"),
    (["--preset=huge"], "preset"),
    (["--hidden=wide"], "hidden"),
]

# Runs the entry point's flag parsing and main() once per command line in
# one process (one JAX start-up for all cases), as absl.app.run would, and
# prints how each stopped. The flags cannot be defined in the pytest process:
# other entry points define flags of the same names there.
_BAD_FLAG_DRIVER = """
import json, sys
from absl import flags
from experiments import train
outcomes = []
for argv in json.loads(sys.argv[1]):
  train.FLAGS.unparse_flags()
  try:
    train.FLAGS(["train"] + argv)
    train.main(["train"])
    outcomes.append({"exit": "returned"})
  except SystemExit as stop:
    outcomes.append({"exit": stop.code})
  except flags.Error as error:
    outcomes.append({"exit": "flags.Error: " + str(error)})
print(json.dumps(outcomes))
"""


@pytest.fixture(scope="module")
def bad_flag_outcomes(tmp_path_factory):
  """{case index: (exit code or message, workdir, prepared_root)}."""
  root = tmp_path_factory.mktemp("bad_flags")
  cases, dirs = [], []
  for index, (argv, _) in enumerate(BAD_FLAGS):
    workdir, prepared = root / f"work{index}", root / f"prepared{index}"
    # No raw data is reachable: a bad flag that went unnoticed would stop at
    # --data_root instead of training.
    cases.append(
        [
            f"--workdir={workdir}",
            f"--prepared_root={prepared}",
            "--preset=tiny",
            "--dataset=ml-1m-sample",
            f"--data_root={root / 'no_data'}",
            *argv,
        ]
    )
    dirs.append((workdir, prepared))
  process = subprocess.run(
      [sys.executable, "-c", _BAD_FLAG_DRIVER, json.dumps(cases)],
      cwd=REPO_ROOT,
      env=_env(),
      capture_output=True,
      text=True,
      timeout=RUN_TIMEOUT_S,
  )
  assert process.returncode == 0, process.stderr
  outcomes = json.loads(process.stdout.splitlines()[-1])
  return {i: (outcome["exit"], *dirs[i]) for i, outcome in enumerate(outcomes)}


@pytest.mark.parametrize(
    "index", range(len(BAD_FLAGS)), ids=[" ".join(a) for a, _ in BAD_FLAGS]
)
def test_bad_flag_stops_before_any_work(bad_flag_outcomes, index):
  flag = BAD_FLAGS[index][1]
  message, workdir, prepared = bad_flag_outcomes[index]
  # sys.exit(message) exits with status 1; absl turns flags.Error into 1 too.
  assert isinstance(message, str), message
  assert f"--{flag}" in message, message
  assert not workdir.exists() and not prepared.exists()


def test_batch_that_does_not_split_over_devices_fails_in_subprocess(tmp_path):
  workdir = tmp_path / "work"
  env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=3")
  process = _run(
      "--dataset=ml-1m-sample",
      "--preset=tiny",
      "--batch_size=16",
      f"--workdir={workdir}",
      f"--prepared_root={tmp_path / 'prepared'}",
      env=env,
  )
  assert process.returncode != 0
  assert "--batch_size=16" in process.stderr, process.stderr
  assert "3 devices" in process.stderr, process.stderr
  assert not workdir.exists()
  assert not (tmp_path / "prepared").exists()


def _snapshot(directory) -> dict:
  """Every file under `directory` with its bytes and modification time."""
  root = pathlib.Path(directory)
  return {
      str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
      for p in sorted(root.rglob("*"))
      if p.is_file()
  }


@pytest.mark.slow  # Two training runs.
def test_second_training_on_a_busy_workdir_stops_at_once(
    reference, sample_args, tmp_path
):
  workdir = tmp_path / "busy"
  first = subprocess.Popen(
      _command(*sample_args(workdir)),
      cwd=REPO_ROOT,
      env=_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,
      text=True,
  )
  watchdog = threading.Timer(RUN_TIMEOUT_S, first.kill)
  watchdog.start()
  try:
    printed = []
    for line in first.stdout:  # The first run holds the lock while training.
      printed.append(line)
      if _step_of(line) == 1:
        break
    # Paused, so that it is still training whatever the machine's load.
    first.send_signal(signal.SIGSTOP)
    before = _snapshot(workdir / "checkpoints")
    start = time.monotonic()
    try:
      second = _run(*sample_args(workdir))
    finally:
      first.send_signal(signal.SIGCONT)
    assert second.returncode == 1
    [message] = second.stderr.splitlines()
    assert message.startswith(
        f"error: --workdir={workdir} is in use by "
        f"another training (pid {first.pid} since "
    )
    assert time.monotonic() - start < RUN_TIMEOUT_S / 2
    assert _snapshot(workdir / "checkpoints") == before  # It wrote nothing.
    printed.extend(first.stdout)
    assert first.wait() == 0, "".join(printed)
  finally:
    watchdog.cancel()
    first.stdout.close()
  # The first run was not disturbed; its lock went with it.
  _assert_same_outcome(workdir, reference[0])
  _checked(_run(*sample_args(workdir)))


def test_killed_holder_leaves_no_stale_lock(tmp_path):
  workdir = tmp_path / "work"
  holder = subprocess.Popen(
      [
          sys.executable,
          "-c",
          "import sys, time\n"
          "from linrec_jax.training import workdir_lock\n"
          f"with workdir_lock.hold({str(workdir)!r}) as announce:\n"
          "  announce(); print('held', flush=True); time.sleep(600)\n",
      ],
      cwd=REPO_ROOT,
      env=_env(),
      stdout=subprocess.PIPE,
      text=True,
  )
  try:
    assert holder.stdout.readline() == "held\n"
    probe = (
        "from linrec_jax.training import workdir_lock\n"
        f"with workdir_lock.hold({str(workdir)!r}): print('free')\n"
    )
    busy = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert "WorkdirBusyError" in busy.stderr
    assert f"pid {holder.pid} since" in busy.stderr
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    free = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert free.stdout == "free\n", free.stderr
  finally:
    holder.kill()
    holder.stdout.close()


def _broken_prepared(root: pathlib.Path, prepared: pathlib.Path) -> str:
  """A copy of the prepared sample whose sequences file is cut short."""
  broken = root / "broken-data"
  shutil.copytree(prepared, broken)
  arrays = broken / "sequences.npz"
  arrays.write_bytes(arrays.read_bytes()[:100])
  return str(broken)


# Errors a user causes with the data at hand: (extra flags, what the one
# line must hold). `{root}` is the test's directory.
USER_ERRORS = [
    (["--hidden=1000000000"], "--hidden=1000000000"),
    (["--batch_size=100000"], "--batch_size=100000 exceeds the"),
    (["--lr=1e30"], "--lr=1e+30 is probably too high"),
    (["--lr=nan"], "--lr: must be a finite number"),
    (["--dropout=inf"], "--dropout: must be a finite number"),
    (["--workdir="], "--workdir is empty"),
    (
        ["--workdir=/proc/linrec-run"],
        "--workdir=/proc/linrec-run is not writable",
    ),
    (["--workdir={root}/a-file"], "--workdir={root}/a-file is not writable"),
    (["--dataset={root}/broken-data"], "{root}/broken-data"),
]

_USER_ERROR_DRIVER = _BAD_FLAG_DRIVER


@pytest.fixture(scope="module")
def user_error_outcomes(sample_args, reference, tmp_path_factory):
  """[(exit message, workdir snapshot before, after)] per USER_ERRORS."""
  root = tmp_path_factory.mktemp("user_errors")
  (root / "a-file").write_text("not a directory\n")
  prepared = pathlib.Path(
      json.loads((reference[0] / "config.json").read_text())["data_dir"]
  )
  _broken_prepared(root, prepared)
  cases, workdirs = [], []
  for index, (argv, _) in enumerate(USER_ERRORS):
    workdir = root / f"work{index}"
    argv = [a.format(root=root) for a in argv]
    cases.append([*sample_args(workdir), *argv])
    workdirs.append(workdir)
  process = subprocess.run(
      [sys.executable, "-c", _USER_ERROR_DRIVER, json.dumps(cases)],
      cwd=REPO_ROOT,
      env=_env(),
      capture_output=True,
      text=True,
      timeout=RUN_TIMEOUT_S,
  )
  assert process.returncode == 0, process.stderr[-3000:]
  assert "Traceback" not in process.stderr, process.stderr[-3000:]
  outcomes = json.loads(process.stdout.splitlines()[-1])
  return root, [(o["exit"], w) for o, w in zip(outcomes, workdirs)]


@pytest.mark.parametrize(
    "index", range(len(USER_ERRORS)), ids=[" ".join(a) for a, _ in USER_ERRORS]
)
def test_user_error_is_one_line_and_leaves_no_results(
    user_error_outcomes, index
):
  root, outcomes = user_error_outcomes
  message, workdir = outcomes[index]
  expected = USER_ERRORS[index][1].format(root=root)
  assert isinstance(message, str), message  # sys.exit(message): status 1
  assert message.startswith("error: ") and "\n" not in message, message
  assert expected in message, message
  assert not (workdir / "results.json").exists()
  assert not (workdir / "checkpoints").exists() or not any(
      (workdir / "checkpoints").iterdir()
  )


@pytest.mark.slow  # Two training runs.
def test_full_disk_is_one_line_and_the_next_run_resumes(
    reference, sample_args, tmp_path
):
  workdir = tmp_path / "full"
  # Files may not grow past 40 KB: the first checkpoint cannot be written,
  # as on a full disk (EFBIG instead of ENOSPC).
  limit = (
      "import resource, signal, sys, runpy\n"
      "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
      "resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))\n"
      "sys.argv = ['train', *sys.argv[1:]]\n"
      "runpy.run_module('experiments.train', run_name='__main__')\n"
  )
  process = subprocess.run(
      [sys.executable, "-c", limit, *sample_args(workdir)],
      cwd=REPO_ROOT,
      env=_env(),
      capture_output=True,
      text=True,
      timeout=RUN_TIMEOUT_S,
  )
  assert process.returncode == 1, process.stderr[-3000:]
  [message] = process.stderr.splitlines()
  assert message.startswith("error: ") and str(workdir) in message, message
  assert not (workdir / "results.json").exists()
  # Without the limit the run starts over and ends as the reference.
  _checked(_run(*sample_args(workdir)))
  _assert_same_outcome(workdir, reference[0])
