"""Tests of `linrec_jax.training.checkpointing.Checkpointer` on tiny pytrees."""

import json
import logging
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from linrec_jax.training import checkpointing
from linrec_jax.training import steps

# First bytes of a pickle of protocol 2 or newer: PROTO opcode, version.
_PICKLE_PROTOCOLS = tuple(bytes([0x80, v]) for v in range(2, 6))


def _tree(value: float):
  """A TrainState with an Adam state, all leaves filled with `value`."""
  params = {
      "dense": {
          "kernel": jnp.full((64, 32), value, jnp.float32),
          "bias": jnp.full((32,), value, jnp.float32),
      }
  }
  tx = optax.adam(1e-3)
  state = steps.TrainState(
      step=jnp.asarray(int(value), jnp.int32),
      params=params,
      opt_state=tx.init(params),
  )
  # Non-zero moments, so that a mix-up of mu and nu would show.
  opt_state = jax.tree.map(lambda x: x + value, state.opt_state)
  state = state.replace(opt_state=opt_state)
  return jax.device_get({"state": state, "best_params": params})


def _abstract(tree):
  return jax.eval_shape(lambda: tree)


def _assert_trees_equal(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert np.asarray(a).dtype == np.asarray(e).dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def _step_dirs(directory):
  return sorted(
      int(p.name) for p in pathlib.Path(directory).iterdir() if p.name.isdigit()
  )


def _array_files(step_dir) -> list[pathlib.Path]:
  """The OCDBT data files of a checkpoint (the arrays' bytes)."""
  files = [
      p
      for p in pathlib.Path(step_dir, "arrays").rglob("*")
      if p.is_file() and p.parent.name == "d"
  ]
  assert files
  return files


@pytest.fixture
def two_steps(tmp_path):
  """A checkpoint directory holding steps 1 and 2; returns (dir, trees)."""
  directory = tmp_path / "checkpoints"
  trees = {1: _tree(1.0), 2: _tree(2.0)}
  checkpointer = checkpointing.Checkpointer(str(directory), max_to_keep=3)
  for step, tree in trees.items():
    checkpointer.save(step, tree, {"progress": {"epoch": step}})
  checkpointer.close()
  return directory, trees


def _restore(directory, like):
  checkpointer = checkpointing.Checkpointer(str(directory))
  try:
    return checkpointer.restore_latest(_abstract(like))
  finally:
    checkpointer.close()


def test_round_trip_keeps_values_dtypes_and_optax_types(two_steps):
  directory, trees = two_steps
  arrays, meta = _restore(directory, trees[1])
  _assert_trees_equal(arrays, trees[2])
  assert isinstance(arrays["state"], steps.TrainState)
  adam = arrays["state"].opt_state[0]
  assert isinstance(adam, optax.ScaleByAdamState)
  assert float(np.asarray(adam.mu["dense"]["bias"])[0]) == 2.0
  assert meta["progress"] == {"epoch": 2}
  assert meta["step"] == 2


def test_empty_directory_restores_nothing(tmp_path):
  assert _restore(tmp_path / "checkpoints", _tree(0.0)) is None


def test_keeps_only_the_latest(tmp_path):
  checkpointer = checkpointing.Checkpointer(str(tmp_path), max_to_keep=2)
  for step in (1, 2, 3):
    checkpointer.save(step, _tree(float(step)), {})
  checkpointer.close()
  assert _step_dirs(tmp_path) == [2, 3]


def test_saving_an_existing_step_replaces_it(two_steps):
  directory, trees = two_steps
  checkpointer = checkpointing.Checkpointer(str(directory), max_to_keep=3)
  checkpointer.save(2, _tree(5.0), {"progress": {"epoch": 5}})
  checkpointer.close()
  arrays, meta = _restore(directory, trees[1])
  _assert_trees_equal(arrays, _tree(5.0))
  assert meta["progress"] == {"epoch": 5}


def test_nan_arrays_are_not_taken_for_damage(tmp_path):
  # A diverged run's checkpoint is intact; NaN != NaN must not discard it.
  tree = jax.tree.map(
      lambda x: np.full_like(x, np.nan)
      if np.issubdtype(x.dtype, np.floating)
      else x,
      _tree(1.0),
  )
  checkpointer = checkpointing.Checkpointer(str(tmp_path / "checkpoints"))
  checkpointer.save(1, tree, {})
  checkpointer.close()
  restored = _restore(tmp_path / "checkpoints", tree)
  assert restored is not None
  _assert_trees_equal(restored[0], tree)


def _wider(tree):
  """The same tree with a wider bias: another model configuration."""
  tree = jax.tree.map(lambda x: x, tree)
  tree["best_params"]["dense"]["bias"] = np.zeros((33,), np.float32)
  return tree


def _deeper(tree):
  """The same tree with one more parameter."""
  tree = jax.tree.map(lambda x: x, tree)
  tree["best_params"]["extra"] = np.zeros((2,), np.float32)
  return tree


@pytest.mark.parametrize(
    "change, named",
    [
        (
            _wider,
            "['best_params']['dense']['bias']: [[32], 'float32'] there, "
            "[[33], 'float32'] here",
        ),
        (_deeper, "['best_params']['extra']: absent there"),
    ],
)
def test_checkpoint_of_another_model_is_an_error_not_damage(
    two_steps, change, named
):
  directory, trees = two_steps
  with pytest.raises(checkpointing.IncompatibleCheckpointError) as error:
    _restore(directory, change(trees[1]))
  assert named in str(error.value)
  assert "checkpoints/2 holds arrays of another model" in str(error.value)
  assert _step_dirs(directory) == [1, 2]
  assert not pathlib.Path(str(directory) + "_damaged").exists()


def _overwrite_middle(step_dir: pathlib.Path):
  for path in _array_files(step_dir):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(
        255 - b for b in data[middle : middle + 16]
    )
    path.write_bytes(bytes(data))


def _truncate(step_dir: pathlib.Path):
  for path in _array_files(step_dir):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_fingerprint(step_dir: pathlib.Path):
  meta_file = step_dir / "meta" / "metadata"
  meta = json.loads(meta_file.read_text())
  meta["fingerprint"][0][0] += 1.0
  meta_file.write_text(json.dumps(meta))


def _edit_meta(change):
  """Edits the JSON record of a checkpoint as a user with an editor would."""

  def damage(step_dir: pathlib.Path):
    meta_file = step_dir / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    change(meta)
    meta_file.write_text(json.dumps(meta))

  damage.__name__ = change.__name__
  return damage


def _later_epoch(meta):
  meta["progress"]["epoch"] = 7


def _unfinished(meta):
  meta["progress"]["finished"] = False


def _extra_history(meta):
  meta["progress"]["history"] = [{"epoch": 1, "ndcg@10": 0.9}]


def _step_renumbered(meta):
  meta["step"] = 5


def _checksum_replaced(meta):
  meta["integrity"] = "0" * 64


def _not_json(step_dir: pathlib.Path):
  (step_dir / "meta" / "metadata").write_text('{"progress": {"epoch": 2')


@pytest.mark.parametrize(
    "damage",
    [
        _overwrite_middle,
        _truncate,
        _wrong_fingerprint,
        _not_json,
        _edit_meta(_later_epoch),
        _edit_meta(_unfinished),
        _edit_meta(_extra_history),
        _edit_meta(_step_renumbered),
        _edit_meta(_checksum_replaced),
    ],
)
def test_damaged_latest_is_set_aside_and_previous_used(
    two_steps, damage, caplog
):
  directory, trees = two_steps
  damage(directory / "2")
  with caplog.at_level(logging.WARNING):
    arrays, meta = _restore(directory, trees[1])
  _assert_trees_equal(arrays, trees[1])
  assert meta["step"] == 1
  assert _step_dirs(directory) == [1]
  damaged = pathlib.Path(str(directory) + "_damaged")
  assert _step_dirs(damaged) == [2]
  warnings = [
      r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
  ]
  assert any(
      "checkpoints/2 is damaged" in w and "checkpoints_damaged/2" in w
      for w in warnings
  ), warnings
  assert all("\n" not in w for w in warnings)
  checkpointer = checkpointing.Checkpointer(str(directory))
  checkpointer.restore_latest(_abstract(trees[1]))
  assert checkpointer.damaged == []  # Nothing left to set aside.
  checkpointer.close()


def test_meta_checksum_covers_every_value():
  meta = {
      "progress": {
          "best_metric": 0.25,
          "finished": True,
          "history": [{"epoch": 1}],
      },
      "step": 3,
  }
  meta["integrity"] = checkpointing.meta_checksum(meta)
  checkpointing.verify_meta(meta)
  for edit in (
      lambda m: m["progress"].update(best_metric=0.26),
      lambda m: m["progress"].update(finished=False),
      lambda m: m["progress"]["history"].append({"epoch": 2}),
      lambda m: m.update(step=4),
      lambda m: m.update(extra=1),
  ):
    edited = json.loads(json.dumps(meta))
    edit(edited)
    with pytest.raises(ValueError, match="does not match its recorded"):
      checkpointing.verify_meta(edited)


def test_damaged_checkpoints_are_listed_with_the_reason(two_steps):
  directory, trees = two_steps
  _edit_meta(_later_epoch)(directory / "2")
  checkpointer = checkpointing.Checkpointer(
      str(directory), warn=lambda line: None
  )
  arrays, meta = checkpointer.restore_latest(_abstract(trees[1]))
  checkpointer.close()
  assert meta["step"] == 1
  [damaged] = checkpointer.damaged
  assert damaged.step == 2
  assert damaged.reason == (
      "ValueError: its JSON metadata does not match its recorded checksum"
  )
  assert damaged.moved_to == str(directory) + "_damaged/2"


def test_check_sees_the_record_before_the_arrays_and_can_refuse(two_steps):
  directory, trees = two_steps
  seen = []

  def refuse(meta):
    seen.append(meta["step"])
    raise RuntimeError("another configuration")

  checkpointer = checkpointing.Checkpointer(str(directory))
  with pytest.raises(RuntimeError, match="another configuration"):
    checkpointer.restore_latest(_abstract(trees[1]), check=refuse)
  checkpointer.close()
  assert seen == [2]
  assert _step_dirs(directory) == [1, 2]
  assert not pathlib.Path(str(directory) + "_damaged").exists()


def test_all_damaged_restores_nothing(two_steps):
  directory, trees = two_steps
  for step in (1, 2):
    _truncate(directory / str(step))
  assert _restore(directory, trees[1]) is None
  assert _step_dirs(pathlib.Path(str(directory) + "_damaged")) == [1, 2]


def test_files_are_arrays_and_json_never_pickles(two_steps):
  directory, _ = two_steps
  json_names = {"_CHECKPOINT_METADATA", "_METADATA", "metadata"}
  seen_json = set()
  for path in pathlib.Path(directory).rglob("*"):
    if not path.is_file():
      continue
    assert path.suffix not in (".pkl", ".pickle", ".npy"), path
    head = path.read_bytes()[:2]
    assert head not in _PICKLE_PROTOCOLS, path
    if path.name in json_names:
      json.loads(path.read_text())
      seen_json.add(path.name)
  assert seen_json == json_names
  # The small metadata item is plain JSON with the bookkeeping in it.
  meta = json.loads((directory / "2" / "meta" / "metadata").read_text())
  assert set(meta) == {"progress", "fingerprint", "step", "leaves", "integrity"}
  assert meta["leaves"]["['best_params']['dense']['kernel']"] == [
      [64, 32],
      "float32",
  ]
  # Orbax's tree metadata describes every leaf as an array ("None" is
  # Optax's EmptyState, a node without values).
  tree = json.loads((directory / "2" / "arrays" / "_METADATA").read_text())
  kinds = {
      leaf["value_metadata"]["value_type"]
      for leaf in tree["tree_metadata"].values()
  }
  assert kinds == {"np.ndarray", "None"}, kinds
  assert not any(
      name.endswith((".pkl", ".pickle"))
      for _, _, names in os.walk(directory)
      for name in names
  )
