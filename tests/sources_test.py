"""Real-data check of data_prep.sources: GroupLens ML-1M prepared 5-core is
SASRec's ml-1m.txt.

The raw GroupLens ratings at hand cover users 1-2999 only. For them the test
checks that the ratings SASRec left out are exactly those of items rated at
most 4 times there. Users 3000-6040 are then filled in from ml-1m.txt
through the published id maps (with increasing times), and the whole file,
zipped as GroupLens ships it, must prepare with k_core=5 to ml-1m.txt's
6,040 users, 3,416 items, 999,611 interactions and sequences. What this
cannot check: the 292 ratings SASRec dropped among users 3000-6040.
"""

import collections
import gzip
import zipfile

import numpy as np
import pytest

from data_prep import prepare
from data_prep import sources
from linrec_jax import data

RAW = "ml-1m/ratings_users0001-2999.dat.gz"


def _pairs(path):
  return dict(line.split() for line in path.read_text().splitlines())


@pytest.mark.slow
def test_grouplens_5_core_is_the_sasrec_file(data_file, tmp_path):
  sasrec = collections.defaultdict(list)
  text = gzip.decompress(data_file("ml-1m/ml-1m.txt.gz").read_bytes())
  for line in text.decode().splitlines():
    user, item = line.split()
    sasrec[user].append(item)
  user_of = _pairs(data_file("ml-1m/sas_to_original_users.txt"))
  item_of = _pairs(data_file("ml-1m/sas_to_original_items.txt"))
  raw = gzip.decompress(data_file(RAW).read_bytes()).decode().splitlines()
  raw_users = {line.split("::")[0] for line in raw}
  counts = collections.Counter(line.split("::")[1] for line in raw)
  dropped = {i: n for i, n in counts.items() if i not in set(item_of.values())}
  assert max(dropped.values()) <= 4
  kept_first_half = sum(
      len(s) for u, s in sasrec.items() if user_of[u] in raw_users
  )
  assert len(raw) - kept_first_half == sum(dropped.values()) == 306

  lines = list(raw)
  for user, items in sasrec.items():
    if user_of[user] not in raw_users:
      lines += [
          f"{user_of[user]}::{item_of[i]}::4::{t}" for t, i in enumerate(items)
      ]
  lines.sort(key=lambda line: int(line.split("::")[0]))
  archive = tmp_path / "ml-1m.zip"
  with zipfile.ZipFile(archive, "w") as z:
    z.writestr("ml-1m/ratings.dat", "\n".join(lines) + "\n")
  output = prepare.prepare_dataset(
      sources.ML1M, archive, tmp_path / "prepared", **sources.GROUPLENS_OPTIONS
  )

  seqs = data.load(output)
  assert (seqs.num_users, seqs.num_items, len(seqs.items)) == (
      6040,
      3416,
      999611,
  )
  to_sas_user = {o: s for s, o in user_of.items()}
  to_sas_item = {o: s for s, o in item_of.items()}
  users = (output / data.USER_IDS_FILE).read_text().splitlines()
  items = np.array((output / data.ITEM_IDS_FILE).read_text().splitlines())
  for row, user in enumerate(users):
    got = [to_sas_item[i] for i in items[seqs.user_items(row) - 1]]
    assert got == sasrec[to_sas_user[user]], user
