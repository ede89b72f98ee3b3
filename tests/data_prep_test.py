"""Tests of data_prep: readers, filters, atomic writing, the CLI.

Real-data tests read LINREC_DATA_DIR through the conftest fixtures; the rest
write small synthetic files into tmp_path.
"""

import collections
import gzip
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from data_prep import download
from data_prep import parsing
from data_prep import prepare
from data_prep import readers
from data_prep import writer
from data_prep.parsing import DataFormatError
from linrec_jax import data

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
ML1M_SHA256 = "7c5d534ef3a363c21c424a260fa8e4e0dd0237d8370eb1a250280afbf03fd7dd"


def _read_ids(path: pathlib.Path) -> list[str]:
  return path.read_text().splitlines()


def _original_sequences(directory: pathlib.Path) -> dict[str, list[str]]:
  """{original user id: [original item ids]} of a prepared dataset."""
  seqs = data.load(directory)
  users = _read_ids(directory / data.USER_IDS_FILE)
  items = np.array(_read_ids(directory / data.ITEM_IDS_FILE))
  return {
      user: items[seqs.user_items(row) - 1].tolist()
      for row, user in enumerate(users)
  }


def _write(path: pathlib.Path, text: str, *, compress: bool = False):
  raw = text.encode()
  path.write_bytes(gzip.compress(raw) if compress else raw)
  return path


def _leftovers(directory: pathlib.Path) -> list[str]:
  return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# Real data ------------------------------------------------------------------


def test_ml1m_counts_and_test_item_is_last_in_file(ml1m_prepared, data_file):
  text = gzip.decompress(data_file("ml-1m/ml-1m.txt.gz").read_bytes())
  last = {}
  for line in text.decode().splitlines():
    user, item = line.split()
    last[user] = item
  seqs = data.load(ml1m_prepared)
  assert (seqs.num_users, seqs.num_items, len(seqs.items)) == (
      6040,
      3416,
      999611,
  )
  users = _read_ids(ml1m_prepared / data.USER_IDS_FILE)
  items = np.array(_read_ids(ml1m_prepared / data.ITEM_IDS_FILE))
  test_items = items[data.leave_one_out(seqs).test_items - 1]
  assert dict(zip(users, test_items.tolist())) == last


def test_ml1m_meta(ml1m_prepared):
  meta = json.loads((ml1m_prepared / data.META_FILE).read_text())
  assert meta["format_version"] == data.FORMAT_VERSION
  assert meta["source"]["format"] == readers.SASREC
  assert meta["source"]["files"][0]["sha256"] == ML1M_SHA256
  assert meta["length_stats"]["min"] == 18
  assert meta["length_stats"]["max"] == 2277
  assert meta["length_stats"]["median"] == 96
  assert meta["length_stats"]["mean"] == pytest.approx(165.4985, abs=1e-4)
  assert meta["dropped_users_short"] == 0
  assert meta["options"] == {
      "format": "auto",
      "min_rating": None,
      "k_core": 0,
      "dedup_consecutive": False,
  }
  assert meta["training"]["max_len"] == 200


def test_ml1m_loads_fast(ml1m_prepared):
  start = time.perf_counter()
  data.load(ml1m_prepared)
  assert time.perf_counter() - start < 0.5


def test_gowalla_lightgcn(data_file, tmp_path):
  directory = data_file("gowalla/train.txt.gz").parent
  output = prepare.prepare_dataset("gowalla", directory, tmp_path / "g")
  seqs = data.load(output)
  assert (seqs.num_users, seqs.num_items, len(seqs.items)) == (
      29858,
      40981,
      1027370,
  )
  assert seqs.meta["options"]["k_core"] == 5
  assert seqs.meta["source"]["format"] == readers.LIGHTGCN
  sequences = _original_sequences(output)
  train, test = (
      gzip.decompress((directory / f"{part}.txt.gz").read_bytes()).split(b"\n")
      for part in ("train", "test")
  )
  for line_no in (0, 1, 18402, 29857):
    user, *train_items = train[line_no].decode().split()
    test_user, *test_items = test[line_no].decode().split()
    assert user == test_user
    assert sequences[user] == train_items + test_items


def test_raw_grouplens_gives_sasrec_sequences(data_file, tmp_path):
  raw = data_file("ml-1m/ratings_users0001-2999.dat.gz")
  output = prepare.prepare_dataset("ml-1m", raw, tmp_path / "raw")
  assert data.load(output).meta["source"]["format"] == readers.GROUPLENS
  to_sas = {}
  for kind in ("users", "items"):
    path = data_file(f"ml-1m/sas_to_original_{kind}.txt")
    pairs = [line.split() for line in path.read_text().splitlines()]
    to_sas[kind] = {original: sas for sas, original in pairs}
  expected = collections.defaultdict(list)
  text = gzip.decompress(data_file("ml-1m/ml-1m.txt.gz").read_bytes())
  for line in text.decode().splitlines():
    user, item = line.split()
    expected[user].append(item)
  got = _original_sequences(output)
  assert len(got) == 2999
  for user, items in got.items():
    sas_items = [to_sas["items"][i] for i in items if i in to_sas["items"]]
    assert sas_items == expected[to_sas["users"][user]], user


def test_timestamped_checkins_come_out_oldest_first(data_file, tmp_path):
  path = data_file("gowalla-liu2017-toy1000/Gowalla_checkins.txt.gz")
  output = prepare.prepare_dataset("gowalla-toy", path, tmp_path / "c")
  assert data.load(output).meta["source"]["format"] == readers.CHECKINS
  rows = collections.defaultdict(list)
  for line in gzip.decompress(path.read_bytes()).decode().splitlines():
    user, poi, when = line.split("\t")
    rows[user].append((float(when), poi))
  got = _original_sequences(output)
  assert len(got) == 1000
  for user, checkins in rows.items():
    # The file runs newest first; sorted() is stable for equal times.
    oldest_first = [poi for _, poi in sorted(checkins, key=lambda r: r[0])]
    assert got[user] == oldest_first
    assert got[user][0] == checkins[-1][1] or checkins[-1][0] == checkins[-2][0]


# Synthetic data -------------------------------------------------------------

SNAP_LINES = (
    "7\t2010-10-19T23:55:27Z\t30.2\t-97.7\t22847\n"
    "7\t2010-10-18T22:17:43Z\t30.2\t-97.7\t420315\n"
    "7\t2010-10-17T23:42:03Z\t30.2\t-97.7\t316637\n"
    "3\t2010-10-12T00:21:28Z\t40.6\t-73.9\t5\n"
    "3\t2010-10-11T20:21:20Z\t40.6\t-73.9\t22847\n"
    "3\t2010-10-11T20:21:20Z\t40.6\t-73.9\t9\n"
)


def test_snap_checkins_oldest_first(tmp_path):
  path = _write(tmp_path / "loc-gowalla.txt.gz", SNAP_LINES, compress=True)
  output = prepare.prepare_dataset("g", path, tmp_path / "out")
  assert data.load(output).meta["source"]["format"] == readers.SNAP
  assert _original_sequences(output) == {
      "3": ["22847", "9", "5"],  # The tie keeps the file order.
      "7": ["316637", "420315", "22847"],
  }


def test_recbole_inter_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  rows = []
  for user in ("alice", "bob", "carol", "dave"):
    for n in range(6):
      item = f"item-{rng.integers(20)}"
      rating, when = rng.integers(1, 6), rng.integers(1e9)
      rows.append((user, item, float(rating), float(when)))
  rng.shuffle(rows)
  header = (
      "user_id:token\titem_id:token\trating:float\tnote:token_seq\t"
      "timestamp:float"
  )
  lines = [f"{u}\t{i}\t{r}\tx y z\t{t}" for u, i, r, t in rows]
  path = _write(tmp_path / "data.inter", "\n".join([header, *lines]) + "\n")
  for min_rating in (None, 3.0):
    output = prepare.prepare_dataset(
        "any", path, tmp_path / f"out{min_rating}", min_rating=min_rating
    )
    expected = collections.defaultdict(list)
    for u, i, r, t in sorted(rows, key=lambda row: row[3]):
      if min_rating is None or r >= min_rating:
        expected[u].append(i)
    expected = {u: s for u, s in expected.items() if len(s) >= 3}
    assert _original_sequences(output) == expected
    meta = data.load(output).meta
    assert meta["source"]["format"] == readers.RECBOLE
    assert meta["options"]["min_rating"] == min_rating


def test_grouplens_zip_and_gzip(tmp_path):
  lines = "1::10::5::300\n1::11::3::100\n1::12::1::200\n"
  lines += "2::10::4::5\n2::13::4::1\n2::12::4::9\n"
  archive = tmp_path / "ml-1m.zip"
  with zipfile.ZipFile(archive, "w") as z:
    z.writestr("ml-1m/movies.dat", "10::A::x\n")
    z.writestr("ml-1m/ratings.dat", lines)
  gz = _write(tmp_path / "ratings.dat.gz", lines, compress=True)
  expected = {"1": ["11", "12", "10"], "2": ["13", "10", "12"]}
  for i, path in enumerate((archive, gz)):
    output = prepare.prepare_dataset("ml-1m", path, tmp_path / f"o{i}")
    assert _original_sequences(output) == expected
  output = prepare.prepare_dataset("ml-1m", gz, tmp_path / "r", min_rating=4)
  assert _original_sequences(output) == {"2": ["13", "10", "12"]}


@pytest.mark.parametrize(
    "name,text,expected",
    [
        ("a.txt", "1 2\n1 3\n", readers.SASREC),
        ("ratings.txt", "1::2::3::4\n", readers.GROUPLENS),
        ("train.txt", "0 1 2\n", readers.LIGHTGCN),
        ("x.txt", "0 1 2 3\n1 4\n", readers.LIGHTGCN),
        ("c.txt", "0\t1\t1287503727.0\n", readers.CHECKINS),
        ("s.txt", SNAP_LINES, readers.SNAP),
        ("d.inter", "user_id:token\titem_id:token\n", readers.RECBOLE),
        ("d.csv", "user_id:token\titem_id:token\n", readers.RECBOLE),
    ],
)
def test_detect_format(tmp_path, name, text, expected):
  path = _write(tmp_path / name, text)
  assert readers.detect_format([path]) == expected


def test_filters_k_core_repeats_and_short_users(tmp_path):
  # User 4 has two items seen by nobody else; with k=2 they go, then user 4
  # is too short and goes as well.
  text = "1 1\n1 1\n1 2\n1 3\n2 1\n2 2\n2 3\n3 2\n3 3\n3 1\n4 8\n4 9\n4 1\n"
  path = _write(tmp_path / "s.txt", text)
  output = prepare.prepare_dataset(
      "x", path, tmp_path / "o", k_core=2, dedup_consecutive=True
  )
  assert _original_sequences(output) == {
      "1": ["1", "2", "3"],
      "2": ["1", "2", "3"],
      "3": ["2", "3", "1"],
  }
  filtering = data.load(output).meta["filtering"]
  assert filtering["dropped_consecutive_repeats"] == 1
  assert filtering["dropped_users_k_core"] == 1
  output = prepare.prepare_dataset("x", path, tmp_path / "o2")
  meta = data.load(output).meta
  assert (meta["num_users"], meta["num_interactions"]) == (4, 13)
  short = _write(tmp_path / "short.txt", text + "5 1\n5 2\n")
  meta = data.load(prepare.prepare_dataset("x", short, tmp_path / "o3")).meta
  assert meta["dropped_users_short"] == 1
  assert meta["num_users"] == 4


def test_ids_are_remapped_to_consecutive_and_saved(tmp_path):
  path = _write(tmp_path / "s.txt", "50 7\n50 -3\n50 7\n9 1000\n9 7\n9 1\n")
  output = prepare.prepare_dataset("x", path, tmp_path / "o")
  seqs = data.load(output)
  assert _read_ids(output / data.USER_IDS_FILE) == ["9", "50"]
  assert _read_ids(output / data.ITEM_IDS_FILE) == ["-3", "1", "7", "1000"]
  np.testing.assert_array_equal(seqs.items, [4, 3, 2, 3, 1, 3])
  np.testing.assert_array_equal(seqs.offsets, [0, 3, 6])


# Bad input ------------------------------------------------------------------

BAD_INPUTS = [
    # (file name, contents, expected line, expected field, what)
    ("s.txt", "1 2\n1 3\n1 4 5\n", 3, None, "wrong number of fields"),
    ("s.txt", "1 2\n1 x3\n", 2, "2 (item)", "non-integer id"),
    ("s.txt", "1 2\nu 3\n", 2, "1 (user)", "non-integer id"),
    ("s.txt", "1 2\n\n1 3\n", 2, None, "empty line"),
    ("r.dat", "1::2::5::9\n1::3::five::9\n", 2, "3 (rating)", "non-numeric"),
    ("r.dat", "1::2::5::9\n1::3::4::9:00\n", 2, "4 (timestamp)", "non-numeric"),
    ("r.dat", "1::2::5::9\n1::3::4\n", 2, None, "wrong number of fields"),
    ("c.txt", "0\t1\t12.0\n0\t2\tnan\n", 2, "3 (timestamp)", "non-finite"),
    ("c.txt", "0\t1\t1.0\n0\t2\tnoon\n", 2, "3 (timestamp)", "non-numeric"),
    ("c.txt", "0\t1\t12.0\n0\t2 3\n", 2, None, "wrong number of fields"),
    ("train.txt", "0 1 2\n1 3 x\n", 2, "3 (item)", "non-integer id"),
    (
        "l.txt",
        SNAP_LINES + "3\t2010-13-45T00:00:00Z\t1\t2\t3\n",
        7,
        "2 (timestamp)",
        "ISO 8601",
    ),
    (
        "d.inter",
        "user_id:token\titem_id:token\trating:float\na\tb\t1\na\t\t2\n",
        3,
        "2 (item)",
        "empty id",
    ),
    (
        "d.inter",
        "user_id:token\titem_id:token\trating:float\na\tb\tgood\n",
        2,
        "3 (rating)",
        "non-numeric",
    ),
    ("d.inter", "user_id:token\trating:float\na\t1\n", 1, None, "no item_id"),
    ("d.inter", "user_id:token\titem_id\na\tb\n", 1, "2", "name:type"),
]


@pytest.mark.parametrize("name,text,line,field,what", BAD_INPUTS)
@pytest.mark.parametrize("compress", [False, True])
def test_bad_line_is_reported_and_nothing_written(
    tmp_path, name, text, line, field, what, compress
):
  path = _write(tmp_path / (name + ".gz" * compress), text, compress=compress)
  output = tmp_path / "out" / "prepared"
  with pytest.raises(DataFormatError) as info:
    prepare.prepare_dataset("x", path, output)
  message = str(info.value)
  assert str(path) in message and f"line {line}" in message, message
  assert what in message, message
  assert info.value.line == line
  if field is not None:
    assert f"field {field}" in message, message
  assert not output.exists()
  parent = tmp_path / "out"
  assert not parent.exists() or not any(parent.iterdir())


def test_bad_line_in_a_later_chunk_has_its_line_number(tmp_path, monkeypatch):
  monkeypatch.setattr(parsing, "CHUNK_BYTES", 64)
  lines = [f"{u} {i}" for u in range(1, 40) for i in range(3)]
  good = _write(tmp_path / "good.txt", "\n".join(lines))
  lines[100] = "34 eight"
  bad = _write(tmp_path / "bad.txt", "\n".join(lines) + "\n")
  with pytest.raises(DataFormatError, match=r"line 101, field 2 \(item\)"):
    prepare.prepare_dataset("x", bad, tmp_path / "o")
  output = prepare.prepare_dataset("x", good, tmp_path / "o")
  assert data.load(output).meta["num_interactions"] == len(lines)


@pytest.mark.parametrize(
    "name,text",
    [
        ("e.txt", ""),
        ("w.txt", " \n\n"),
        ("h.inter", "user_id:token\titem_id:token\n"),
    ],
)
def test_empty_input(tmp_path, name, text):
  path = _write(tmp_path / name, text)
  with pytest.raises(DataFormatError, match="empty input"):
    prepare.prepare_dataset("x", path, tmp_path / "o")
  assert not (tmp_path / "o").exists()


def test_unknown_or_undetectable_format_and_missing_file(tmp_path):
  path = _write(tmp_path / "s.txt", "1 2\n")
  with pytest.raises(ValueError, match="unknown format 'csv'"):
    prepare.prepare_dataset("x", path, tmp_path / "o", format="csv")
  odd = _write(tmp_path / "odd.txt", "1,2,3\n")
  with pytest.raises(DataFormatError, match="cannot tell the format"):
    prepare.prepare_dataset("x", odd, tmp_path / "o")
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    prepare.prepare_dataset("x", tmp_path / "nope.txt", tmp_path / "o")
  with pytest.raises(FileNotFoundError, match="neither"):
    prepare.prepare_dataset("x", tmp_path, tmp_path / "o")
  with pytest.raises(ValueError, match="needs ratings"):
    prepare.prepare_dataset("x", path, tmp_path / "o", min_rating=3)
  assert not (tmp_path / "o").exists()


def test_failed_write_leaves_nothing_keeps_old_output(tmp_path, monkeypatch):
  path = _write(tmp_path / "s.txt", "1 2\n1 3\n1 4\n")
  output = tmp_path / "out"
  prepare.prepare_dataset("x", path, output)
  before = {p.name: p.read_bytes() for p in output.iterdir()}
  with pytest.raises(FileExistsError, match="--overwrite"):
    prepare.prepare_dataset("x", path, output)

  def crash(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(writer, "_write_lines", crash)
  with pytest.raises(OSError, match="disk full"):
    prepare.prepare_dataset("x", path, output, overwrite=True)
  assert {p.name: p.read_bytes() for p in output.iterdir()} == before
  with pytest.raises(OSError, match="disk full"):
    prepare.prepare_dataset("x", path, tmp_path / "new")
  assert not (tmp_path / "new").exists()
  assert _leftovers(tmp_path) == []
  monkeypatch.undo()
  _write(path, "1 2\n1 3\n1 5\n")
  prepare.prepare_dataset("x", path, output, overwrite=True)
  assert _read_ids(output / data.ITEM_IDS_FILE) == ["2", "3", "5"]
  assert _leftovers(tmp_path) == []


def test_output_written_meanwhile_by_another_process_is_kept(
    tmp_path, monkeypatch
):
  path = _write(tmp_path / "s.txt", "1 2\n1 3\n1 4\n")
  output = tmp_path / "out"
  write_lines = writer._write_lines

  def racing_write_lines(*args):
    output.mkdir(exist_ok=True)
    (output / data.META_FILE).write_text("{}")
    write_lines(*args)

  monkeypatch.setattr(writer, "_write_lines", racing_write_lines)
  with pytest.raises(FileExistsError, match="appeared while writing"):
    prepare.prepare_dataset("x", path, output)
  assert [p.name for p in output.iterdir()] == [data.META_FILE]
  assert _leftovers(tmp_path) == []


def test_never_replaces_a_foreign_directory(tmp_path):
  path = _write(tmp_path / "s.txt", "1 2\n1 3\n1 4\n")
  foreign = tmp_path / "home"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("mine")
  with pytest.raises(FileExistsError, match="not a prepared dataset"):
    prepare.prepare_dataset("x", path, foreign, overwrite=True)
  assert (foreign / "notes.txt").read_text() == "mine"


def test_unwritable_output_names_it(tmp_path):
  path = _write(tmp_path / "s.txt", "1 2\n1 3\n1 4\n")
  inside_a_file = tmp_path / "s.txt" / "prepared"
  with pytest.raises(OSError, match=f"cannot write {inside_a_file}: "):
    prepare.prepare_dataset("x", path, inside_a_file)
  assert path.read_text() == "1 2\n1 3\n1 4\n"
  assert _leftovers(tmp_path) == []


def test_download_offline_and_checksum(tmp_path, monkeypatch):
  cache = tmp_path / "cache"
  monkeypatch.setattr(download, "ML1M_URL", "http://127.0.0.1:9/ml-1m.zip")
  with pytest.raises(download.DownloadError, match="--input"):
    prepare.prepare_dataset("ml-1m", None, tmp_path / "o", download_dir=cache)
  archive = tmp_path / "src" / "ml-1m.zip"
  archive.parent.mkdir()
  with zipfile.ZipFile(archive, "w") as z:
    z.writestr("ml-1m/ratings.dat", "1::10::5::3\n1::11::3::1\n1::12::1::2\n")
  monkeypatch.setattr(download, "ML1M_URL", archive.as_uri())
  with pytest.raises(download.DownloadError, match="md5"):
    prepare.prepare_dataset("ml-1m", None, tmp_path / "o", download_dir=cache)
  assert _leftovers(cache) == []
  md5 = hashlib.md5(archive.read_bytes()).hexdigest()
  monkeypatch.setattr(download, "ML1M_MD5", md5)
  output = prepare.prepare_dataset(
      "ml-1m", None, tmp_path / "o", download_dir=cache
  )
  assert (cache / download.ML1M_FILE).read_bytes() == archive.read_bytes()
  meta = data.load(output).meta
  assert meta["source"]["downloaded_from"] == archive.as_uri()
  assert (
      meta["source"]["files"][0]["sha256"]
      == hashlib.sha256(archive.read_bytes()).hexdigest()
  )
  assert _original_sequences(output) == {"1": ["11", "12", "10"]}


def _run_cli(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  return subprocess.run(
      [sys.executable, "-m", "data_prep.prepare", *args],
      cwd=REPO_ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
  )


def test_cli(tmp_path):
  path = _write(tmp_path / "s.txt", "1 2\n1 3\n1 4\n2 2\n2 3\n2 5\n")
  result = _run_cli(
      "--dataset=gowalla",
      f"--input={path}",
      f"--output_dir={tmp_path / 'o'}",
      "--k_core=0",
  )
  assert result.returncode == 0, result.stderr
  assert "preset gowalla" in result.stdout and "max_len=100" in result.stdout
  assert "2 users, 4 items, 6 interactions" in result.stdout
  assert data.load(tmp_path / "o").meta["options"]["k_core"] == 0
  bad = _write(tmp_path / "b.txt", "1 2\n1 x\n")
  result = _run_cli(f"--input={bad}", f"--output_dir={tmp_path / 'b'}")
  assert result.returncode == 1
  assert f"{bad}, line 2, field 2 (item): non-integer id 'x'" in result.stderr
  assert not (tmp_path / "b").exists()


# Exact parsing ---------------------------------------------------------------

_INTER = b"user_id:token\titem_id:token\n"
AMBIGUOUS_INPUTS = [
    # (file name, contents, expected line, expected field, what)
    ("s.txt", b"1 2\n1 +5\n", 2, "2 (item)", "non-canonical integer id '+5'"),
    ("s.txt", b"1 2\n1 5_000\n", 2, "2 (item)", "non-canonical"),
    ("s.txt", b"1 2\n05 3\n", 2, "1 (user)", "write it as 5"),
    ("s.txt", b"1 2\n-0 3\n", 2, "1 (user)", "non-canonical"),
    ("s.txt", b"1 2\n1 5.0\n", 2, "2 (item)", "non-integer id '5.0'"),
    ("r.dat", b"1::2::5::9\n1:: 5::3::9\n", 2, "2 (item)", "non-canonical"),
    ("r.dat", b"1::2::5::9\n1::5::3::9_0\n", 2, "4 (timestamp)", "ambiguous"),
    ("c.txt", b"0\t1\t12.0\n0\t 1\t12.0\n", 2, "2 (item)", "non-canonical"),
    ("c.txt", b"0\t1\t12.0\n0\t1\t12.0 \n", 2, "3 (timestamp)", "ambiguous"),
    ("train.txt", b"0 1 2\n1 03 4\n", 2, "2 (item)", "non-canonical"),
    ("s.txt", b"1 2\r1 3\r1 4\r", 1, None, "carriage return without a line"),
    ("s.txt", b"1 2\r\n1 3\r1 4\r\n", 2, None, "carriage return"),
    ("train.txt", b"0 1 2\r1 3 4\r", 1, None, "carriage return"),
    ("s.txt", b"1 2\n1\x0c3\n", 2, None, "control character 0x0c"),
    ("s.txt", b"1 2\n1 3\x00\n", 2, "2 (item)", "control character 0x00"),
    ("s.txt", b"1 2\n1 \xff3\n", 2, "2 (item)", "not valid UTF-8"),
    ("d.inter", _INTER + b"a\tb\nal\xe9ce\tb\n", 3, "1 (user)", "UTF-8"),
    (
        "d.inter",
        b"user_id:token\titem_id:token\tn\xe9:token\na\tb\tc\n",
        1,
        "3",
        "not valid UTF-8",
    ),
    (
        "d.inter",
        b"user_id:token\titem_id:token\tuser_id:token\na\tb\tc\n",
        1,
        "3",
        "'user_id' appears twice (fields 1 and 3)",
    ),
    (
        "d.inter",
        b"item_id:token\tuser_id:token\titem_id:float\na\tb\t1\n",
        1,
        "3",
        "'item_id' appears twice",
    ),
    (
        "d.inter",
        b"user_id:token\tx:float\titem_id:token\tx:float\na\t1\tb\t2\n",
        1,
        "4",
        "'x' appears twice",
    ),
    ("d.inter", _INTER + b"a\tb\na \tb\n", 3, "1 (user)", "white space"),
    (
        "d.inter",
        b"user_id:token\titem_id:token\r\na\tb\rc\td\r\n",
        2,
        "2 (item)",
        "carriage return",
    ),
    (
        "l.txt",
        SNAP_LINES.encode() + b"3\t2010-10-11 20:21:20Z\t1\t2\t3\n",
        7,
        "2 (timestamp)",
        "ISO 8601",
    ),
    (
        "l.txt",
        SNAP_LINES.encode() + b"3\t2010-10-11T20:21Z\t1\t2\t3\n",
        7,
        "2 (timestamp)",
        "ISO 8601",
    ),
    (
        "l.txt",
        SNAP_LINES.encode() + b"3\t2010-10-11T20:21:20ZZ\t1\t2\t3\n",
        7,
        "2 (timestamp)",
        "ISO 8601",
    ),
]


@pytest.mark.parametrize("name,raw,line,field,what", AMBIGUOUS_INPUTS)
@pytest.mark.parametrize("compress", [False, True])
def test_ambiguous_input_is_an_error(
    tmp_path, name, raw, line, field, what, compress
):
  path = tmp_path / (name + ".gz" * compress)
  path.write_bytes(gzip.compress(raw) if compress else raw)
  output = tmp_path / "out" / "prepared"
  with pytest.raises(DataFormatError) as info:
    prepare.prepare_dataset("x", path, output)
  message = str(info.value)
  assert "\n" not in message
  assert message.startswith(f"{path}, line {line}"), message
  assert info.value.line == line
  assert info.value.field == field, message
  assert what in message, message
  assert not (tmp_path / "out").exists()


def test_blank_input_and_trailing_space(tmp_path):
  blank = _write(tmp_path / "w.txt", " \n\t\n")
  with pytest.raises(DataFormatError, match="empty input"):
    prepare.prepare_dataset("x", blank, tmp_path / "o", format=readers.SASREC)
  # Trailing blank lines go; space at the end of the last line is data.
  spaced = _write(tmp_path / "c.txt", "0\t1\t1.0\n0\t2\t2.0\n0\t3\t3.0 \n\n")
  with pytest.raises(DataFormatError, match="line 3, field 3"):
    prepare.prepare_dataset("x", spaced, tmp_path / "o")
  _write(spaced, "0\t1\t1.0\n0\t2\t2.0\n0\t3\t3.0\n \n\n")
  output = prepare.prepare_dataset("x", spaced, tmp_path / "o")
  assert _original_sequences(output) == {"0": ["1", "2", "3"]}


def test_canonical_ids_still_read_exactly(tmp_path):
  lines = "0 -12\n0 7\n0 9223372036854775807\n10 -9223372036854775808\n10 7\n"
  path = _write(tmp_path / "s.txt", lines + "10 0\n")
  output = prepare.prepare_dataset("x", path, tmp_path / "o")
  assert _original_sequences(output) == {
      "0": ["-12", "7", "9223372036854775807"],
      "10": ["-9223372036854775808", "7", "0"],
  }


# Compressed input -------------------------------------------------------------


def _zip_bytes(members, compression=zipfile.ZIP_DEFLATED) -> bytes:
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
    for name, text in members.items():
      archive.writestr(name, text)
  return buffer.getvalue()


def _with_method(archive: bytes, method: int) -> bytes:
  """The archive with its members' compression method field set to `method`."""
  out = bytearray(archive)
  for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
    at = out.find(signature)
    while at >= 0:
      out[at + offset : at + offset + 2] = method.to_bytes(2, "little")
      at = out.find(signature, at + 4)
  return bytes(out)


RATINGS = "1::10::5::300\n1::11::3::100\n1::12::1::200\n" * 50
_GOOD_GZIP = gzip.compress(("1 2\n1 3\n1 4\n" * 4000).encode(), mtime=0)
CORRUPT_ARCHIVES = [
    # (file name, stored bytes, what)
    (
        "s.txt.gz",
        _GOOD_GZIP[:10] + b"\xff" * 40 + _GOOD_GZIP[50:],
        "not a readable gzip file",
    ),
    (
        "s.txt.gz",
        _GOOD_GZIP[: len(_GOOD_GZIP) // 2],
        "not a readable gzip file",
    ),
    ("s.txt.gz", _GOOD_GZIP[:-8] + b"\0" * 8, "not a readable gzip file"),
    ("s.txt.gz", b"\x1f\x8b", "not a readable gzip file"),
    (
        "ml-1m.zip",
        _with_method(_zip_bytes({"ml-1m/ratings.dat": RATINGS}), 9),
        "ratings.dat: unsupported",
    ),
    (
        "ml-1m.zip",
        _with_method(_zip_bytes({"ml-1m/ratings.dat": RATINGS}), 99),
        "unsupported",
    ),
    ("ml-1m.zip", b"PK\x03\x04" + b"\0" * 60, "not a readable zip file"),
    (
        "ml-1m.zip",
        _zip_bytes({"ml-1m/ratings.dat": RATINGS * 9})[:-30],
        "not a readable zip file",
    ),
]


@pytest.mark.parametrize(
    "name,raw,what",
    CORRUPT_ARCHIVES,
    # Ids without the bytes: every pytest worker collects the same names.
    ids=[f"{name}-{i}" for i, (name, _, _) in enumerate(CORRUPT_ARCHIVES)],
)
@pytest.mark.parametrize("fmt", ["auto", "given"])
def test_corrupt_compressed_input(tmp_path, name, raw, what, fmt):
  path = tmp_path / name
  path.write_bytes(raw)
  given = readers.GROUPLENS if name.endswith(".zip") else readers.SASREC
  options = {} if fmt == "auto" else {"format": given}
  with pytest.raises(DataFormatError) as info:
    prepare.prepare_dataset("x", path, tmp_path / "o", **options)
  message = str(info.value)
  assert message.startswith(f"{path}: ") and "\n" not in message, message
  assert what in message, message
  assert not (tmp_path / "o").exists()


def _gzip_stream(path: pathlib.Path, line: bytes, total: int) -> None:
  """Writes `total` bytes of repeated `line`, gzip-compressed, in pieces."""
  piece = line * ((1 << 20) // len(line))
  with gzip.open(path, "wb") as f:
    for _ in range(total // len(piece)):
      f.write(piece)


def test_input_beyond_the_size_limit(tmp_path):
  limit = 4 << 20
  bomb = tmp_path / "s.txt.gz"
  _gzip_stream(bomb, b"1 2\n", 256 << 20)
  assert bomb.stat().st_size < (2 << 20)
  tracemalloc.start()
  with pytest.raises(
      DataFormatError,
      match=f"decompresses to more than {limit} bytes.*--max_input_mb",
  ):
    prepare.prepare_dataset(
        "x", bomb, tmp_path / "o", max_input_bytes=limit, format=readers.SASREC
    )
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert peak < 8 * limit
  plain = _write(tmp_path / "p.txt", "1 2\n" * (limit // 4 + 1))
  with pytest.raises(
      DataFormatError, match=f"{limit + 4} bytes, over the input limit"
  ):
    prepare.prepare_dataset("x", plain, tmp_path / "o", max_input_bytes=limit)
  archive = tmp_path / "ml-1m.zip"
  archive.write_bytes(_zip_bytes({"ml-1m/ratings.dat": RATINGS * 500}))
  with pytest.raises(DataFormatError, match="ratings.dat holds 1050000 bytes"):
    prepare.prepare_dataset(
        "x", archive, tmp_path / "o", max_input_bytes=1 << 20
    )
  assert not (tmp_path / "o").exists()
  output = prepare.prepare_dataset(
      "x", archive, tmp_path / "o", max_input_bytes=2 << 20
  )
  assert data.load(output).num_users == 1
  assert parsing.MAX_INPUT_BYTES == 2 << 30


# The command line ------------------------------------------------------------


def _run_module(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  return subprocess.run(
      [sys.executable, "-m", "data_prep", *args],
      cwd=REPO_ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
  )


@pytest.mark.parametrize(
    "everything", [False, pytest.param(True, marks=pytest.mark.slow)]
)
def test_every_cli_error_is_one_line(tmp_path, everything):
  good = _write(tmp_path / "s.txt", "1 2\n1 3\n1 4\n")
  bad = _write(tmp_path / "b.txt", "1 2\n1 03\n")
  gz = tmp_path / "t.txt.gz"
  gz.write_bytes(_GOOD_GZIP[: len(_GOOD_GZIP) // 2])
  existing = tmp_path / "existing"
  assert (
      _run_module(f"--input={good}", f"--output_dir={existing}").returncode == 0
  )
  before = {p.name: p.read_bytes() for p in existing.iterdir()}
  a_file = _write(tmp_path / "a_file", "x")
  out = tmp_path / "o"
  cases = [
      # (arguments, exit status, what the line says)
      ([f"--input={good}"], 2, "--output_dir"),
      ([f"--input={good}", "--output_dir="], 2, "--output_dir is empty"),
      ([f"--input={good}", f"--output_dir={out}", "--k_core=x"], 2, "--k_core"),
      (
          [f"--input={good}", f"--output_dir={out}", "--k_core=-1"],
          1,
          "k_core must be an integer >= 0",
      ),
      (
          [f"--input={good}", f"--output_dir={out}", "--min_rating=nan"],
          1,
          "min_rating must be a finite number",
      ),
      (
          [f"--input={good}", f"--output_dir={out}", "--max_input_mb=0"],
          2,
          "--max_input_mb",
      ),
      ([f"--input={good}", f"--output_dir={out}", "--nope=1"], 2, "nope"),
      (
          [f"--input={good}", f"--output_dir={out}", "extra"],
          2,
          "unexpected arguments ['extra']",
      ),
      (
          [f"--input={good}", f"--output_dir={out}", "--format=csv"],
          2,
          "--format",
      ),
      (
          [f"--input={tmp_path / 'none.txt'}", f"--output_dir={out}"],
          1,
          "none.txt",
      ),
      (
          [f"--input={bad}", f"--output_dir={out}"],
          1,
          f"{bad}, line 2, field 2 (item): non-canonical",
      ),
      (
          [f"--input={gz}", f"--output_dir={out}"],
          1,
          f"{gz}: not a readable gzip file",
      ),
      ([f"--input={good}", f"--output_dir={a_file}"], 1, "not a directory"),
      ([f"--input={good}", f"--output_dir={existing}"], 1, "--overwrite"),
      (
          [f"--input={bad}", f"--output_dir={existing}", "--overwrite"],
          1,
          "line 2",
      ),
  ]
  # The default run takes one case of each kind (flag, flag value, input,
  # archive, output); the slow run takes them all.
  fast = (
      "--output_dir is empty",
      "--k_core",
      f"{bad}, line 2",
      f"{gz}: not",
      "--overwrite",
  )
  if not everything:
    cases = [c for c in cases if c[2].startswith(fast)]
    assert len(cases) == len(fast)
  for args, status, what in cases:
    result = _run_module(*args)
    assert result.returncode == status, (args, result.stderr)
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, lines)
    assert what in lines[0], (args, lines)
    assert "Traceback" not in result.stdout
  assert not out.exists()
  assert {p.name: p.read_bytes() for p in existing.iterdir()} == before
  assert a_file.read_text() == "x"
  assert _leftovers(tmp_path) == []
