"""Tests for experiments.recommend and linrec_jax.serving.restore on a toy run."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_prep import prepare
from data_prep import writer
from experiments import recommend
from linrec_jax import data
from linrec_jax import models
from linrec_jax.constants import PAD_ID
from linrec_jax.serving import ranking
from linrec_jax.serving import restore
from linrec_jax.training import checkpointing
from linrec_jax.training import optimizer
from linrec_jax.training import run_binding
from linrec_jax.training import steps
from linrec_jax.training import train
from linrec_jax.training.config import TrainConfig

NUM_ITEMS, MAX_LEN = 12, 6
# Original ids differ from internal ones, to catch a mix-up.
USER_IDS = ["u10", "u20", "u30"]
ITEM_IDS = [str(100 + i) for i in range(1, NUM_ITEMS + 1)]
HISTORIES = [[1, 2, 3, 4, 5, 6, 7, 8, 9], [12, 11, 10], [5, 5, 6, 1]]
CONFIG = TrainConfig(
    max_len=MAX_LEN, hidden=16, heads=2, layers=1, ffn=32, dropout=0.0
)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_data(directory):
  items = np.concatenate(HISTORIES).astype(np.int32)
  offsets = np.cumsum([0] + [len(h) for h in HISTORIES]).astype(np.int64)
  meta = {
      "format_version": data.FORMAT_VERSION,
      "dataset": "toy",
      "num_users": len(HISTORIES),
      "num_items": NUM_ITEMS,
      "num_interactions": len(items),
      "source": {"format": "sasrec"},
  }
  return str(
      writer.write_prepared(
          directory,
          items=items,
          offsets=offsets,
          user_ids=[u.encode() for u in USER_IDS],
          item_ids=[i.encode() for i in ITEM_IDS],
          meta=meta,
      )
  )


def _save_run(workdir, data_dir, seed=0, steps_saved=(3,), config=CONFIG):
  """A workdir as experiments/train.py leaves it, with random parameters."""
  model = models.make_model(config, NUM_ITEMS)
  tx = optimizer.make_optimizer(lr=config.lr)
  state = steps.create_train_state(model, tx, jax.random.key(seed), MAX_LEN)
  # Far from the init, so the ranking depends on the history.
  leaves, treedef = jax.tree.flatten(state.params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  params = jax.tree.unflatten(
      treedef,
      [x + 0.5 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)],
  )
  state = jax.device_get(state.replace(params=params))
  checkpointer = checkpointing.Checkpointer(
      os.path.join(workdir, "checkpoints")
  )
  for step in steps_saved:
    checkpointer.save(
        step, {"state": state, "best_params": state.params}, {"progress": {}}
    )
  checkpointer.close()
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(
        {
            "dataset": "toy",
            "preset": "tiny",
            "data_dir": data_dir,
            "config": json.loads(config.to_json()),
        },
        f,
    )
  return model, jax.device_get(params)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("run")
  data_dir = _write_data(root / "prepared")
  workdir = str(root / "workdir")
  model, params = _save_run(workdir, data_dir)
  return {"workdir": workdir, "model": model, "params": params, "root": root}


def _expected_scores(model, params, history):
  window = history[-MAX_LEN:]
  inputs = jnp.array([window + [PAD_ID] * (MAX_LEN - len(window))])
  states = model.apply({"params": params}, inputs)
  return np.array(
      model.apply(
          {"params": params}, states[0, len(window) - 1], method="logits"
      )
  )


def test_top_items_excludes_padding_and_history():
  scores = np.array([[9.0, 1.0, 5.0, 3.0, 5.0], [9.0, 4.0, 3.0, 2.0, 1.0]])
  (ids0, best0), (ids1, best1) = ranking.top_items(scores, 3, exclude=[[2], []])
  np.testing.assert_array_equal(ids0, [4, 3, 1])
  np.testing.assert_array_equal(best0, [5.0, 3.0, 1.0])
  np.testing.assert_array_equal(ids1, [1, 2, 3])
  np.testing.assert_array_equal(best1, [4.0, 3.0, 2.0])
  (ids0, _), (ids1, _) = ranking.top_items(scores, 10, exclude=[[1, 2, 3], []])
  np.testing.assert_array_equal(ids0, [4])  # Only item 4 is left.
  assert len(ids1) == 4


def test_load_trained_reads_best_params(run):
  trained = restore.load_trained(run["workdir"])
  assert trained.step == 3 and trained.dataset == "toy"
  assert trained.config == CONFIG
  jax.tree.map(np.testing.assert_array_equal, trained.params, run["params"])


def test_known_users_full_history_excluded(run):
  _, results = recommend.recommend(run["workdir"], users=["u10", "u30"], k=4)
  for user, result in zip((0, 2), results):
    history = HISTORIES[user]
    expected = _expected_scores(run["model"], run["params"], history)
    expected[[PAD_ID, *history]] = -np.inf
    ranked = [int(item["item"]) - 100 for item in result["items"]]
    left = NUM_ITEMS - len(set(history))
    assert len(ranked) == min(4, left)
    assert ranked == list(np.argsort(-expected, kind="stable")[: len(ranked)])
    # float32 scores of size ~1: an absolute floor for those near 0.
    np.testing.assert_allclose(
        [item["score"] for item in result["items"]],
        expected[ranked],
        rtol=1e-5,
        atol=1e-6,
    )
    assert result["history_length"] == len(history)
    assert result["items"][0]["title"] is None


def test_keep_history_and_new_user_streaming_equals_full(run):
  history = ["105", "101", "107"]
  outputs = [
      recommend.recommend(
          run["workdir"],
          history=history,
          k=NUM_ITEMS,
          keep_history=True,
          engine=engine,
      )[1][0]
      for engine in ("full", "streaming")
  ]
  full, stream = ([item["item"] for item in out["items"]] for out in outputs)
  assert full == stream and len(full) == NUM_ITEMS
  assert set(history) <= set(full)
  np.testing.assert_allclose(
      [i["score"] for i in outputs[0]["items"]],
      [i["score"] for i in outputs[1]["items"]],
      rtol=1e-5,
      atol=1e-5,
  )


def test_unknown_ids_are_clear_errors(run):
  with pytest.raises(ValueError, match="unknown user id.*u99.*user_ids.txt"):
    recommend.recommend(run["workdir"], users=["u10", "u99"])
  with pytest.raises(ValueError, match="unknown item id.*1.*item_ids.txt"):
    recommend.recommend(run["workdir"], history=["101", "1"])


def test_titles_through_the_item_map(run, tmp_path):
  titles = tmp_path / "movies.dat"
  titles.write_text(
      "".join(
          f"{9000 + i}::Movie {i} (2000)::Drama\n"
          for i in range(1, NUM_ITEMS + 1)
      ),
      encoding="utf-8",
  )
  item_map = tmp_path / "map.txt"
  item_map.write_text(
      "".join(f"{100 + i} {9000 + i}\n" for i in range(1, NUM_ITEMS + 1))
  )
  _, results = recommend.recommend(
      run["workdir"],
      users=["u20"],
      k=2,
      titles=str(titles),
      item_map=str(item_map),
  )
  for item in results[0]["items"] + results[0]["recent"]:
    assert item["title"] == f"Movie {int(item['item']) - 100} (2000)"


# Orbax's event loop may report the failed read when it is collected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_restore_skips_a_damaged_checkpoint_without_moving_it(tmp_path):
  data_dir = _write_data(tmp_path / "prepared")
  workdir = str(tmp_path / "workdir")
  _, params = _save_run(workdir, data_dir, steps_saved=(1, 2))
  newest = os.path.join(workdir, "checkpoints", "2", "arrays")
  for name in os.listdir(newest):  # Damage the arrays of step 2.
    path = os.path.join(newest, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
  listing = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  loaded, meta = restore.load_best_params(workdir)
  assert meta["step"] == 1
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == listing
  assert not os.path.exists(os.path.join(workdir, "checkpoints_damaged"))


def test_bert4rec_scores_at_the_mask_token(tmp_path):
  config = TrainConfig(
      model="bert4rec",
      causal=False,
      train_mode="cloze",
      max_len=MAX_LEN,
      hidden=16,
      heads=2,
      layers=1,
      ffn=32,
      dropout=0.0,
  )
  workdir = str(tmp_path / "workdir")
  model, params = _save_run(
      workdir, _write_data(tmp_path / "prepared"), config=config
  )
  _, results = recommend.recommend(workdir, users=["u10"], k=2)
  window = HISTORIES[0][-(MAX_LEN - 1) :] + [model.mask_token]
  states = model.apply({"params": params}, jnp.array([window]))
  expected = np.array(
      model.apply({"params": params}, states[0, -1], method="logits")
  )
  expected[[PAD_ID, *HISTORIES[0]]] = -np.inf
  assert [int(i["item"]) - 100 for i in results[0]["items"]] == list(
      np.argsort(-expected, kind="stable")[:2]
  )
  with pytest.raises(ValueError, match="streaming needs"):
    recommend.recommend(workdir, users=["u10"], engine="streaming")


def test_command_line(run):
  command = [
      sys.executable,
      "-m",
      "experiments.recommend",
      f"--workdir={run['workdir']}",
      "--users=u20",
      "--k=3",
  ]
  done = subprocess.run(
      command,
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert done.returncode == 0, done.stderr
  lines = done.stdout.strip().splitlines()
  assert lines[1].startswith("user u20 (3 items")
  assert len(lines) == 5 and lines[2].lstrip().startswith("1. item")
  done = subprocess.run(
      command[:-2] + ["--users=nobody"],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert done.returncode == 1
  assert "error: unknown user id(s) nobody" in done.stderr
  done = subprocess.run(
      command[:-3] + ["--workdir=", "--users=u20"],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert done.returncode == 1
  assert done.stderr == "error: --workdir is empty; give a directory\n"


@pytest.mark.slow
def test_recommend_after_real_training(tmp_path):
  data_dir = _write_data(tmp_path / "prepared")
  workdir = str(tmp_path / "workdir")
  config = TrainConfig(
      max_len=MAX_LEN,
      hidden=16,
      heads=2,
      layers=1,
      ffn=32,
      batch_size=2,
      max_steps=3,
      eval_batch_size=4,
      log_every_steps=1,
      checkpoint_every_steps=1,
  )
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(
        {
            "dataset": "toy",
            "preset": "tiny",
            "data_dir": data_dir,
            "config": json.loads(config.to_json()),
        },
        f,
    )
  train.train_and_evaluate(config, data_dir, workdir, report=lambda _: None)
  _, results = recommend.recommend(
      workdir, users=USER_IDS, k=3, engine="streaming"
  )
  assert [len(r["items"]) for r in results] == [3, 3, 3]


def _prepared_run(root, prepare_args):
  """A saved run over data prepared by data_prep (NUM_ITEMS items)."""
  data_dir = str(
      prepare.prepare_dataset(
          *prepare_args[:2], root / "prep", **prepare_args[2]
      )
  )
  assert data.load(data_dir).num_items == NUM_ITEMS
  workdir = str(root / "workdir")
  _save_run(workdir, data_dir)
  return workdir


def test_titles_from_the_recbole_item_file(tmp_path):
  # Yelp's field names; user a has items 1..6, b 7..12, in time order.
  rows = [f"{'ab'[i // 6]}\tbiz{i + 1}\t{100 - i}" for i in range(NUM_ITEMS)]
  inter = tmp_path / "yelp.inter"
  inter.write_text(
      "user_id:token\tbusiness_id:token\tdate:float\n" + "\n".join(rows) + "\n"
  )
  (tmp_path / "yelp.item").write_text(
      "business_id:token\titem_name:token_seq\tcity:token_seq\n"
      + "".join(
          f"biz{i}\tShop number {i}\tCity {i}\n"
          for i in range(1, NUM_ITEMS + 1)
      )
  )
  workdir = _prepared_run(
      tmp_path,
      ("yelp", inter, dict(item_field="business_id", time_field="date")),
  )
  _, results = recommend.recommend(workdir, users=["a"], k=4)
  items = results[0]["items"] + results[0]["recent"]
  assert len(items) == 7
  for item in items:
    assert item["title"] == f"Shop number {item['item'][3:]}"
  _, results = recommend.recommend(
      workdir, users=["b"], k=2, title_field="city"
  )
  for item in results[0]["items"]:
    assert item["title"] == f"City {item['item'][3:]}"
  with pytest.raises(
      ValueError,
      match=r"yelp\.item, line 1: the header has "
      "no genre field.*--title_field",
  ):
    recommend.recommend(workdir, users=["b"], title_field="genre")


def test_ml1m_titles_from_the_grouplens_zip(tmp_path, monkeypatch):
  monkeypatch.setenv("LINREC_DATA_DIR", str(tmp_path / "no-data-here"))
  ratings = "".join(
      f"{1 + i // 6}::{10 + i}::4::{i}\n" for i in range(NUM_ITEMS)
  )
  # GroupLens ships movies.dat in ISO-8859-1.
  movies = "".join(
      f"{10 + i}::Film {i} \u00e9t\u00e9 (1999)::Drama\n"
      for i in range(NUM_ITEMS)
  )
  archive = tmp_path / "ml-1m.zip"
  with zipfile.ZipFile(archive, "w") as z:
    z.writestr("ml-1m/ratings.dat", ratings)
    z.writestr("ml-1m/movies.dat", movies.encode("latin-1"))
  workdir = _prepared_run(tmp_path, ("ml-1m", archive, {}))
  _, results = recommend.recommend(workdir, users=["1"], k=3)
  for item in results[0]["items"] + results[0]["recent"]:
    number = int(item["item"]) - 10
    assert item["title"] == f"Film {number} \u00e9t\u00e9 (1999)"


def _save_bound_run(workdir, data_dir, config=CONFIG):
  """A workdir whose checkpoint records its config and its data."""
  model = models.make_model(config, NUM_ITEMS)
  tx = optimizer.make_optimizer(lr=config.lr)
  state = jax.device_get(
      steps.create_train_state(model, tx, jax.random.key(0), MAX_LEN)
  )
  checkpointer = checkpointing.Checkpointer(
      os.path.join(workdir, "checkpoints")
  )
  checkpointer.save(
      3,
      {"state": state, "best_params": state.params},
      {
          "progress": {"best_epoch": 2},
          "config": json.loads(config.to_json()),
          "data_fingerprint": run_binding.prepared_fingerprint(data_dir),
      },
  )
  checkpointer.close()
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(
        {
            "dataset": "toy",
            "preset": "tiny",
            "data_dir": data_dir,
            "config": json.loads(config.to_json()),
        },
        f,
    )


def test_other_prepared_data_is_refused(tmp_path):
  data_dir = _write_data(tmp_path / "prepared")
  workdir = str(tmp_path / "workdir")
  _save_bound_run(workdir, data_dir)
  assert restore.load_trained(workdir).best_epoch == 2
  other = tmp_path / "other"
  shutil.copytree(data_dir, other)
  meta = json.loads((other / "meta.json").read_text())
  meta["dataset"] = "toy-prepared-again"
  (other / "meta.json").write_text(json.dumps(meta))
  with pytest.raises(
      ValueError,
      match=f"--workdir={workdir} was trained on "
      f"other prepared data than {other}/meta.json",
  ):
    recommend.recommend(workdir, users=["u10"], data_dir=str(other))
  # The same files under another path are the same data.
  moved = tmp_path / "moved"
  shutil.copytree(data_dir, moved)
  recommend.recommend(workdir, users=["u10"], data_dir=str(moved))


def test_the_checkpoint_config_wins_over_an_edited_config_json(tmp_path):
  data_dir = _write_data(tmp_path / "prepared")
  workdir = str(tmp_path / "workdir")
  _save_bound_run(workdir, data_dir)
  path = os.path.join(workdir, "config.json")
  with open(path) as f:
    run = json.load(f)
  run["config"]["attention"] = "softmax"
  with open(path, "w") as f:
    json.dump(run, f)
  assert restore.load_trained(workdir).config.attention == "linrec"


def test_an_edited_checkpoint_record_is_skipped_and_reported(tmp_path):
  data_dir = _write_data(tmp_path / "prepared")
  workdir = str(tmp_path / "workdir")
  _save_run(workdir, data_dir, steps_saved=(1, 2))
  record = os.path.join(workdir, "checkpoints", "2", "meta", "metadata")
  with open(record) as f:
    meta = json.load(f)
  meta["progress"]["best_epoch"] = 9
  with open(record, "w") as f:
    json.dump(meta, f)
  trained = restore.load_trained(workdir)
  assert trained.step == 1
  assert trained.skipped == (
      "step 2: ValueError: its JSON metadata does not "
      "match its recorded checksum",
  )
