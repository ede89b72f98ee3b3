"""Tests of data_prep.datasets: where --dataset=ml-1m comes from.

No network: the GroupLens download is a file:// URL to a small zip built
here (with its md5 patched in), and "offline" is a port nothing listens on.
The download cache lives under a temporary $HOME.
"""

import collections
import hashlib
import zipfile

import pytest

from data_prep import datasets
from data_prep import download
from data_prep import sources
from linrec_jax import data

OFFLINE_URL = "http://127.0.0.1:9/ml-1m.zip"
RARE_ITEM = 99


def _ratings():
  """GroupLens lines: users 1-5 rate items 1-5 (each item 5 times), user 1
  also rates RARE_ITEM once, which SASRec's 5-core filter drops."""
  rows = []
  for user in range(1, 6):
    for item in range(1, 6):
      rows.append((user, item, (user * 7 + item * 3) % 11))
  rows.append((1, RARE_ITEM, 4))
  return rows


def _expected(rows):
  """{user: [items by time]} without the rare item, as strings."""
  by_user = collections.defaultdict(list)
  for user, item, when in sorted(rows, key=lambda r: r[2]):
    if item != RARE_ITEM:
      by_user[str(user)].append(str(item))
  return dict(by_user)


def _zip(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(path, "w") as z:
    z.writestr(
        "ml-1m/ratings.dat", "".join(f"{u}::{i}::4::{t}\n" for u, i, t in rows)
    )
    z.writestr("ml-1m/movies.dat", "1::A (1999)::Drama\n")
  return path


def _sequences(directory):
  seqs = data.load(directory)
  users = (directory / data.USER_IDS_FILE).read_text().splitlines()
  items = (directory / data.ITEM_IDS_FILE).read_text().splitlines()
  return {
      u: [items[i - 1] for i in seqs.user_items(r)] for r, u in enumerate(users)
  }


@pytest.fixture
def dirs(tmp_path, monkeypatch):
  """An empty data root, a prepared root and a private download cache."""
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.setattr(download, "ML1M_URL", OFFLINE_URL)
  root = tmp_path / "data"
  root.mkdir()
  return root, tmp_path / "prepared"


def _prepared(root, prepared):
  return datasets.prepared_dir("ml-1m", str(root), str(prepared))


def test_local_sasrec_file_first(dirs):
  root, prepared = dirs
  _zip(root / "ml-1m" / "ml-1m.zip", _ratings())
  (root / "ml-1m" / "ml-1m.txt").write_text("1 2\n1 3\n1 4\n")
  output = _prepared(root, prepared)
  assert output == str(prepared / sources.SASREC_PREPARED)
  assert data.load(output).meta["source"]["format"] == "sasrec"
  # Prepared once, it is reused when the raw file is gone.
  (root / "ml-1m" / "ml-1m.txt").unlink()
  assert _prepared(root, prepared) == output


def test_local_grouplens_zip_is_5_core_without_download(dirs):
  root, prepared = dirs
  rows = _ratings()
  _zip(root / "ml-1m" / "ml-1m.zip", rows)
  output = _prepared(root, prepared)
  assert output == str(prepared / sources.GROUPLENS_PREPARED)
  meta = data.load(output).meta
  assert meta["options"]["k_core"] == 5
  assert meta["source"]["downloaded_from"] is None
  assert _sequences(prepared / sources.GROUPLENS_PREPARED) == _expected(rows)


def test_falls_back_to_the_grouplens_download(dirs, tmp_path, monkeypatch):
  root, prepared = dirs
  rows = _ratings()
  archive = _zip(tmp_path / "server" / "ml-1m.zip", rows)
  monkeypatch.setattr(download, "ML1M_URL", archive.as_uri())
  monkeypatch.setattr(
      download, "ML1M_MD5", hashlib.md5(archive.read_bytes()).hexdigest()
  )
  output = _prepared(root, prepared)
  assert output == str(prepared / sources.GROUPLENS_PREPARED)
  meta = data.load(output).meta
  assert meta["source"]["downloaded_from"] == archive.as_uri()
  assert meta["options"]["k_core"] == 5
  assert meta["filtering"]["dropped_interactions_k_core"] == 1
  assert _sequences(prepared / sources.GROUPLENS_PREPARED) == _expected(rows)
  cached = tmp_path / "home" / ".cache" / "linrec_jax" / "ml-1m.zip"
  assert cached.read_bytes() == archive.read_bytes()
  # Offline now: the prepared copy is used, nothing is fetched.
  monkeypatch.setattr(download, "ML1M_URL", OFFLINE_URL)
  assert _prepared(root, prepared) == output


def test_neither_local_nor_downloadable_is_one_clear_line(dirs):
  root, prepared = dirs
  with pytest.raises(ValueError) as info:
    _prepared(root, prepared)
  message = str(info.value)
  assert "\n" not in message
  assert message.startswith(
      f"--dataset=ml-1m: no local copy in {root}/ml-1m "
      "(none of ml-1m.txt.gz, ml-1m.txt, ml-1m.zip, "
      "ratings.dat, ratings.dat.gz)"
  ), message
  assert f"the download failed ({OFFLINE_URL}: " in message, message
  assert message.endswith(
      f"download {OFFLINE_URL} into {root}/ml-1m/ (or "
      "point --data_root / LINREC_DATA_DIR at the folder "
      "holding ml-1m/) and rerun"
  ), message
  assert not (prepared / sources.GROUPLENS_PREPARED).exists()


def test_a_wrong_download_is_refused(dirs, tmp_path, monkeypatch):
  root, prepared = dirs
  archive = _zip(tmp_path / "server" / "ml-1m.zip", _ratings())
  monkeypatch.setattr(download, "ML1M_URL", archive.as_uri())
  with pytest.raises(
      ValueError,
      match=r"the download failed \(.*ml-1m\.zip "
      f"gave a file with md5 [0-9a-f]{{32}}, expected "
      f"{download.ML1M_MD5}\\)",
  ):
    _prepared(root, prepared)
  assert not (prepared / sources.GROUPLENS_PREPARED).exists()
