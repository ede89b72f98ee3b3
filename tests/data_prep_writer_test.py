"""Tests of data_prep.writer: replacing a prepared directory survives kill -9.

A child process writes a dataset over an existing one and kills itself with
SIGKILL just before its N-th file-system call (open, fsync, rename, the
exchange, mkdtemp, unlink, rmdir), for every N until a run completes; an
outside kill -9 at random moments follows. After every kill the output path
must hold the old or the new dataset, complete and verified, and the next
run must clean up what the killed one left beside it.
"""

import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from data_prep import writer
from linrec_jax import data

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# Two datasets told apart by their items; 3 users of 3 items, 5 items.
OLD_ITEMS = [1, 2, 3, 2, 3, 4, 3, 4, 5]
NEW_ITEMS = [5, 4, 3, 4, 3, 2, 3, 2, 1]

# Loads only the modules the writer needs (not jax), to start in ~0.3 s.
_CHILD = r"""
import os, signal, sys, tempfile, types
repo, output, version, kill_at, mode = sys.argv[1:6]
package = types.ModuleType("linrec_jax")
package.__path__ = [os.path.join(repo, "linrec_jax")]
sys.modules["linrec_jax"] = package
sys.path.insert(0, repo)
import numpy as np
from data_prep import writer

calls = [0]
def counted(function):
  def call(*args, **kwargs):
    calls[0] += 1
    if calls[0] == int(kill_at):
      os.kill(os.getpid(), signal.SIGKILL)
    return function(*args, **kwargs)
  return call

if mode == "two_steps":
  writer._exchange = lambda a, b: False
for module, name in ((os, "rename"), (os, "fsync"), (os, "unlink"),
                     (os, "rmdir"), (tempfile, "mkdtemp"),
                     (writer, "_exchange")):
  setattr(module, name, counted(getattr(module, name)))
writer.open = counted(open)
old = [1, 2, 3, 2, 3, 4, 3, 4, 5]
items = old if version == "old" else old[::-1]
while True:
  writer.write_prepared(
      output, items=np.array(items, np.int32),
      offsets=np.array([0, 3, 6, 9], np.int64),
      user_ids=[b"a", b"b", b"c"], item_ids=[b"%d" % i for i in range(1, 6)],
      meta={"format_version": 1, "num_users": 3, "num_items": 5,
            "num_interactions": 9, "version": version},
      overwrite=True)
  if mode != "loop":
    break
  version = "new" if version == "old" else "old"
  items = old if version == "old" else old[::-1]
"""


def _run_child(output, version, kill_at, mode="once", wait=True):
  command = [
      sys.executable,
      "-c",
      _CHILD,
      str(REPO_ROOT),
      str(output),
      version,
      str(kill_at),
      mode,
  ]
  if not wait:
    return subprocess.Popen(command)
  return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _version(output) -> str:
  """Which dataset the path holds; fails unless it is complete and verified."""
  seqs = data.load(output)
  if seqs.items.tolist() == OLD_ITEMS:
    assert seqs.meta["version"] == "old"
    return "old"
  assert seqs.items.tolist() == NEW_ITEMS
  assert seqs.meta["version"] == "new"
  return "new"


def _siblings(output) -> list[str]:
  return sorted(p.name for p in output.parent.iterdir() if p != output)


@pytest.mark.parametrize(
    "mode",
    # two_steps: the fallback without renameat2 (about 30 children).
    ["once", pytest.param("two_steps", marks=pytest.mark.slow)],
)
def test_kill_at_every_step_of_a_replace(tmp_path, mode):
  output = tmp_path / "prepared"
  assert _run_child(output, "old", 0).returncode == 0
  assert _version(output) == "old" and _siblings(output) == []
  seen = []
  for kill_at in range(1, 100):
    result = _run_child(output, "new", kill_at, mode)
    if result.returncode == 0:
      break
    assert result.returncode == -signal.SIGKILL, result.stderr
    if mode == "once" or output.exists():
      version = _version(output)
    else:
      version = None  # Between the two renames of the fallback.
    left = _siblings(output)
    assert all(name.startswith((".tmp-", ".old-", ".trash-")) for name in left)
    assert writer.clean_leftovers(output) == []
    assert _siblings(output) == []
    after = _version(output)
    assert version in (after, None)
    seen.append(after)
    if after == "new":
      assert _run_child(output, "old", 0).returncode == 0
  else:
    pytest.fail("the write never completed")
  assert _version(output) == "new" and _siblings(output) == []
  # Killed before the swap: old; after it: new; both moments were reached.
  first_new = seen.index("new")
  assert set(seen[:first_new]) == {"old"} and set(seen[first_new:]) == {"new"}
  assert first_new >= 8  # At least the four files written and synced.


def test_kill_while_writing_a_new_directory(tmp_path):
  output = tmp_path / "prepared"
  for kill_at in range(1, 100):
    result = _run_child(output, "new", kill_at)
    if result.returncode == 0:
      break
    assert result.returncode == -signal.SIGKILL
    assert not output.exists() or _version(output) == "new"
    writer.clean_leftovers(output)
    assert _siblings(output) == []
    if output.exists():
      for path in sorted(output.iterdir()):
        path.unlink()
      output.rmdir()
  assert _version(output) == "new"


def test_outside_kill_at_random_moments(tmp_path):
  output = tmp_path / "prepared"
  assert _run_child(output, "old", 0).returncode == 0
  rng = random.Random(0)
  versions = set()
  for _ in range(6):
    child = _run_child(output, "new", 0, "loop", wait=False)
    time.sleep(rng.uniform(0.4, 1.2))
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    versions.add(_version(output))
    writer.clean_leftovers(output)
    assert _siblings(output) == []
    versions.add(_version(output))
  assert versions <= {"old", "new"}


def test_a_live_writer_is_reported_not_deleted(tmp_path, caplog):
  output = tmp_path / "prepared"
  sleeper = subprocess.Popen(
      [sys.executable, "-c", "import time; time.sleep(60)"]
  )
  try:
    host = writer._owner_tag().split(".")[0]
    live = tmp_path / f".tmp-prepared.{host}.{sleeper.pid}.abc"
    other_host = tmp_path / ".tmp-prepared.elsewhere.1.abc"
    trash = tmp_path / ".trash-prepared.x.1.abc"
    unrelated = tmp_path / ".tmp-prepared-2.x.1.abc"
    for path in (live, other_host, trash, unrelated):
      path.mkdir()
    reports = writer.clean_leftovers(output)
  finally:
    sleeper.kill()
    sleeper.wait()
  assert len(reports) == 2
  assert str(live) in reports[0] + reports[1]
  assert str(other_host) in reports[0] + reports[1]
  assert _siblings(output) == sorted(
      p.name for p in (live, other_host, unrelated)
  )
  # Its writer ended: the next run deletes it; the other host's stays.
  assert writer.clean_leftovers(output) == [
      r for r in reports if str(other_host) in r
  ]
  assert not live.exists()
  assert other_host.exists()


def test_an_interrupted_two_step_replace_is_restored(tmp_path):
  output = tmp_path / "prepared"
  assert _run_child(output, "old", 0).returncode == 0
  moved = tmp_path / ".old-prepared.x.1.abc"
  os.rename(output, moved)
  assert writer.clean_leftovers(output) == []
  assert _version(output) == "old" and _siblings(output) == []
  np.testing.assert_array_equal(data.load(output).offsets, [0, 3, 6, 9])
