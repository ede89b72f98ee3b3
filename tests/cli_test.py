"""Tests of the `linrec-train` command line: --help, early checks, flags.

The programs run as subprocesses (their flags are global to a process);
resolution against presets is checked in this process with fresh flags.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

from absl import flags
import pytest

from linrec_jax import configs
from linrec_jax.cli import config_flags
from linrec_jax.cli import config_help
from linrec_jax.training import config as config_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
MAIN_FLAGS = (
    "--workdir",
    "--dataset",
    "--model",
    "--attention",
    "--preset",
    "--config",
    "--flagfile",
    "--lr",
    "--batch_size",
    "--epochs",
)
FIELDS = configs.field_names()

# Runs linrec-train's entry point in a fresh interpreter, then reports how
# it stopped and whether JAX was imported.
_DRIVER = """
import json, sys, time
start = time.perf_counter()
sys.argv = ["linrec-train"] + json.loads(sys.argv[1])
from linrec_jax.cli import train
try:
  train.run()
  code = 0
except SystemExit as stop:
  code = stop.code
print(json.dumps({"code": code if isinstance(code, int) else str(code),
                  "jax": "jax" in sys.modules,
                  "seconds": time.perf_counter() - start}))
"""


def _drive(*argv, cwd):
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), JAX_PLATFORMS="cpu")
  process = subprocess.run(
      [sys.executable, "-c", _DRIVER, json.dumps(list(argv))],
      cwd=cwd,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
  )
  outcome = json.loads(process.stdout.strip().splitlines()[-1])
  return outcome, process


def _help_entries(text: str) -> dict[str, str]:
  """`--name=value  [source]` lines of --help -> {name: rest of line}."""
  entries = {}
  for line in text.splitlines():
    if line.startswith("  --"):
      name, _, rest = line[4:].partition("=")
      entries[name.split()[0]] = rest
  return entries


def test_help_lists_every_flag_with_the_values_in_effect(tmp_path):
  outcome, process = _drive(
      "--help", "--preset=tiny", "--dataset=gowalla", "--lr=0.05", cwd=tmp_path
  )
  assert outcome["code"] == 0, process.stderr
  assert not outcome["jax"]
  text = process.stdout
  for flag in MAIN_FLAGS:
    assert f"\n  {flag}" in text, flag
  entries = _help_entries(text)
  assert set(FIELDS) <= set(entries)
  # The tiny preset's values (linrec_jax/configs/tiny.py), the flag's, and
  # the TrainConfig default where tiny sets nothing.
  assert entries["batch_size"] == "16  [preset tiny]"
  assert entries["hidden"] == "16  [preset tiny]"
  assert entries["lr"] == "0.05  [flag]"
  assert entries["keep_checkpoints"] == "2  [default]"
  assert entries["max_len"] == "20  [preset tiny]"
  assert "Choices: softmax, linrec," in text


def test_help_shows_the_dataset_values_of_the_preset(tmp_path):
  outcome, process = _drive("--help", "--dataset=gowalla", cwd=tmp_path)
  assert outcome["code"] == 0
  entries = _help_entries(process.stdout)
  # cpu on Gowalla: sampled softmax, 512 negatives, batch 256, N = 100.
  source = "[preset cpu with --dataset=gowalla]"
  assert entries["loss"] == f"sampled  {source}"
  assert entries["num_negatives"] == f"512  {source}"
  assert entries["batch_size"] == f"256  {source}"
  assert entries["max_len"] == f"100  {source}"
  assert entries["hidden"] == "64  [preset cpu]"


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--attention=foo"], "--attention"),
        (["--model=gpt"], "--model"),
        (["--config.heads=3", "--hidden=16"], "--heads"),
        (["--preset=huge"], "--preset"),
    ],
)
def test_bad_choice_fails_before_jax_starts(tmp_path, argv, flag):
  start = time.perf_counter()
  outcome, process = _drive(
      f"--workdir={tmp_path / 'work'}", *argv, cwd=tmp_path
  )
  wall = time.perf_counter() - start
  assert outcome["code"] not in (0, None)
  assert not outcome["jax"], "JAX was imported before the flags were checked"
  message = str(outcome["code"]) + process.stderr
  assert flag in message, message
  assert len(message.strip().splitlines()) <= 2, message
  assert not (tmp_path / "work").exists()
  # Without JAX the check takes ~0.2 s of the driver; the interpreter's own
  # start-up is the rest (generous bound for a loaded machine).
  assert outcome["seconds"] < 1.5, outcome
  assert wall < 10


def _resolve(*argv):
  values = flags.FlagValues()
  config_flags.define_flags(values)
  flags.DEFINE_string("workdir", None, "as linrec-train", flag_values=values)
  values(["train", *argv])
  return config_flags.config_from_flags(values)


def test_config_dot_field_is_the_same_flag_and_the_last_wins():
  assert _resolve("--preset=tiny", "--config.lr=0.02").lr == 0.02
  assert _resolve("--preset=tiny", "--config.lr=0.02", "--lr=0.03").lr == 0.03
  assert _resolve("--preset=tiny", "--lr=0.03", "--config.lr=0.02").lr == 0.02
  assert not _resolve("--preset=tiny", "--noconfig.mask_padding").mask_padding


def test_every_field_is_a_flag():
  values = flags.FlagValues()
  config_flags.define_flags(values)
  for name in FIELDS:
    assert name in values and f"config.{name}" in values, name


def test_a_new_train_config_field_becomes_a_flag_by_itself(monkeypatch):
  @dataclasses.dataclass(frozen=True)
  class WithNewField(config_lib.TrainConfig):
    label_smoothing: float = 0.0

  monkeypatch.setattr(config_lib, "TrainConfig", WithNewField)
  monkeypatch.setitem(
      config_help.FIELD_HELP,
      "label_smoothing",
      "Share of the target's probability spread over the items.",
  )
  config = _resolve("--preset=tiny", "--config.label_smoothing=0.25")
  assert isinstance(config, WithNewField)
  assert (config.label_smoothing, config.hidden) == (0.25, 16)
  assert _resolve("--preset=tiny").label_smoothing == 0.0


def test_config_file_takes_the_place_of_the_preset(tmp_path):
  path = tmp_path / "mine.py"
  path.write_text(
      "def get_config(arg=None):\n"
      "  return {'hidden': 32, 'heads': 2, 'lr': float(arg or 1)}\n"
  )
  config = _resolve(f"--config={path}:0.004", "--batch_size=8")
  assert (config.hidden, config.heads, config.lr) == (32, 2, 0.004)
  assert config.batch_size == 8
  # Fields the file leaves out keep the TrainConfig defaults, not cpu's.
  assert config.epochs == config_lib.TrainConfig.epochs == 100


def test_preset_file_with_argument_equals_the_short_flags():
  path = REPO_ROOT / "linrec_jax" / "configs" / "cpu.py"
  from_file = _resolve(f"--config={path}:dataset=gowalla,model=bert4rec")
  from_flags = _resolve("--preset=cpu", "--dataset=gowalla", "--model=bert4rec")
  assert from_file == from_flags
  assert (from_file.lr, from_file.loss, from_file.causal) == (
      1e-3,
      "sampled",
      False,
  )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config=/no/such/file.py"], "--config=/no/such/file.py"),
        (["--config=linrec_jax/configs/cpu.py", "--preset=tiny"], "--config"),
        (["--config=linrec_jax/configs/cpu.py:size=big"], "--config"),
    ],
)
def test_bad_config_file_names_the_flag(argv, message, monkeypatch):
  monkeypatch.chdir(REPO_ROOT)
  with pytest.raises(ValueError, match=message.replace(".", r"\.")):
    _resolve(*argv)


def test_unknown_field_in_a_config_file_is_named(tmp_path):
  path = tmp_path / "bad.py"
  path.write_text("def get_config():\n  return {'hiden': 32}\n")
  with pytest.raises(ValueError, match="unknown field.*hiden"):
    _resolve(f"--config={path}")


def test_committed_flagfile_resolves(monkeypatch):
  monkeypatch.chdir(REPO_ROOT)
  config = _resolve(
      "--flagfile=examples/ml-1m_bert4rec_linrec.flags", "--epochs=5"
  )
  assert (config.model, config.attention, config.train_mode) == (
      "bert4rec",
      "linrec",
      "cloze",
  )
  assert config.lr == 5e-4
  assert config.epochs == 5  # after the flagfile: overrides it
