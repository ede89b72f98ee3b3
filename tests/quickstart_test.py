"""`linrec_jax.run` and the `linrec-train` command, from another directory.

The default suite calls the entry functions with the working directory
elsewhere; the slow test installs a copy of the package (pip, no
dependencies) and runs its console script and the one-liner from there.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import linrec_jax

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE_FILE = "ml-1m-sample/ml-1m.txt"
# Both protocols: the history kept, and excluded (suffix _nohist), plus
# the mean number of already-seen items in the kept ranking's top 10.
METRICS = {
    f"{m}@{k}{s}"
    for m in ("hit", "ndcg", "mrr")
    for k in (5, 10, 20)
    for s in ("", "_nohist")
} | {"seen@10", "seen_input@10"}
TIMEOUT_S = 600
# The tiny preset on the 200-user sample, two epochs.
TINY = dict(
    dataset="ml-1m-sample", model="sasrec", attention="linrec", preset="tiny"
)


def _assert_results(results: dict, workdir: pathlib.Path):
  assert set(results["test"]) == METRICS
  for name, value in results["test"].items():
    assert 0.0 <= value <= (10.0 if name.startswith("seen") else 1.0), (
        name,
        value,
    )
  assert results["config"]["hidden"] == 16  # tiny's, not cpu's 64
  assert json.loads((workdir / "results.json").read_text()) == results
  assert (workdir / "learning_curve.png").is_file()
  assert "test: hit@5" in (workdir / "console.log").read_text()


@pytest.fixture(name="data_root")
def _data_root(data_file) -> str:
  return str(data_file(SAMPLE_FILE).parent.parent)


def test_one_liner_runs_the_tiny_preset_from_another_directory(
    data_root, tmp_path, monkeypatch
):
  monkeypatch.chdir(tmp_path)
  lines = []
  results = linrec_jax.run(
      **TINY,
      workdir="runs/a",
      data_root=data_root,
      epochs=2,
      report=lines.append,
  )
  _assert_results(results, tmp_path / "runs" / "a")
  assert results["epochs_run"] <= 2
  # Prepared relative to the working directory, not the repository.
  assert (tmp_path / "prepared" / "ml-1m-sample" / "meta.json").is_file()
  assert lines[-1].startswith("test: hit@5")


def test_one_liner_rejects_a_bad_value_naming_the_field(tmp_path):
  with pytest.raises(ValueError, match="^--attention:"):
    linrec_jax.run(**dict(TINY, attention="foo"), workdir=str(tmp_path))
  with pytest.raises(ValueError, match="^--hiden:"):
    linrec_jax.run(**TINY, workdir=str(tmp_path), hiden=3)
  assert not list(tmp_path.iterdir())


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  # One device, compiled as the suite compiles (conftest.py).
  env.update(
      JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_backend_optimization_level=0"
  )
  env.update(extra)
  return env


# The one-liner test below runs the same preset from another directory;
# this one checks the installed entry point: slow.
@pytest.mark.slow
def test_train_entry_point_runs_the_tiny_preset_from_another_directory(
    data_root, tmp_path
):
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  process = subprocess.run(
      [
          sys.executable,
          "-c",
          "from linrec_jax.cli import train; train.run()",
          "--preset=tiny",
          "--dataset=ml-1m-sample",
          f"--data_root={data_root}",
          "--workdir=run",
      ],
      cwd=elsewhere,
      env=_env(PYTHONPATH=str(REPO_ROOT)),
      capture_output=True,
      text=True,
      timeout=TIMEOUT_S,
  )
  assert process.returncode == 0, process.stdout[-2000:] + process.stderr
  workdir = elsewhere / "run"
  _assert_results(json.loads((workdir / "results.json").read_text()), workdir)
  assert "compiling the training step" in process.stdout
  assert f"workdir: {workdir}" in process.stdout


@pytest.fixture(name="installed", scope="module")
def _installed(tmp_path_factory):
  """A pip-installed copy of the package: (site dir, its bin dir)."""
  root = tmp_path_factory.mktemp("installed")
  source = root / "source"
  source.mkdir()
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(REPO_ROOT / name, source / name)
  for name in ("linrec_jax", "data_prep"):
    shutil.copytree(
        REPO_ROOT / name,
        source / name,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
  site = root / "site"
  process = subprocess.run(
      [
          sys.executable,
          "-m",
          "pip",
          "install",
          "-q",
          "--no-deps",
          "--target",
          str(site),
          str(source),
      ],
      capture_output=True,
      text=True,
      timeout=TIMEOUT_S,
  )
  if process.returncode != 0:
    pytest.skip(
        "pip could not build the package (it fetches setuptools "
        f"from PyPI): {process.stderr.strip().splitlines()[-1:]}"
    )
  return site, site / "bin"


@pytest.mark.slow
def test_installed_console_script_and_one_liner_run_the_tiny_preset(
    installed, data_root, tmp_path
):
  site, bin_dir = installed
  env = _env(PYTHONPATH=str(site))
  where = subprocess.run(
      [sys.executable, "-c", "import linrec_jax; print(linrec_jax.__file__)"],
      cwd=tmp_path,
      env=env,
      capture_output=True,
      text=True,
      check=True,
  )
  assert where.stdout.startswith(str(site)), where.stdout
  process = subprocess.run(
      [
          str(bin_dir / "linrec-train"),
          "--preset=tiny",
          "--dataset=ml-1m-sample",
          f"--data_root={data_root}",
          "--workdir=cli",
      ],
      cwd=tmp_path,
      env=env,
      capture_output=True,
      text=True,
      timeout=TIMEOUT_S,
  )
  assert process.returncode == 0, process.stdout[-2000:] + process.stderr
  _assert_results(
      json.loads((tmp_path / "cli" / "results.json").read_text()),
      tmp_path / "cli",
  )
  one_liner = (
      "import json, linrec_jax; print(json.dumps(linrec_jax.run("
      f"dataset='ml-1m-sample', model='sasrec', attention='linrec', "
      f"preset='tiny', workdir='api', data_root={data_root!r}, "
      "report=lambda line: None)['test']))"
  )
  process = subprocess.run(
      [sys.executable, "-c", one_liner],
      cwd=tmp_path,
      env=env,
      capture_output=True,
      text=True,
      timeout=TIMEOUT_S,
  )
  assert process.returncode == 0, process.stderr[-3000:]
  assert set(json.loads(process.stdout.splitlines()[-1])) == METRICS


@pytest.mark.slow
def test_installed_console_scripts_answer_help(installed, tmp_path):
  site, bin_dir = installed
  # Each program's own flags; absl's --help exits with status 1.
  for name, flag in (
      ("linrec-train", "--attention"),
      ("linrec-prepare", "--output_dir"),
      ("linrec-recommend", "--history"),
      ("linrec-benchmark", "--variants"),
      ("linrec-search", "--trials"),
  ):
    process = subprocess.run(
        [str(bin_dir / name), "--help"],
        cwd=tmp_path,
        env=_env(PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode in (0, 1), (name, process.stderr[-2000:])
    assert "Traceback" not in process.stderr, (name, process.stderr)
    assert flag in process.stdout, (name, process.stdout)
