"""Tests of data_prep.recbole: field-name options, .item titles, errors.

Every test writes small synthetic RecBole atomic files into tmp_path; the
expected sequences are rebuilt from the rows with plain Python sorting.
"""

import collections
import gzip
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from data_prep import prepare
from data_prep import recbole
from data_prep.parsing import DataFormatError
from linrec_jax import data

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# RecBole's Yelp .inter header (the review text fields are left out).
YELP_HEADER = (
    "review_id:token\tuser_id:token\tbusiness_id:token\tstars:float\t"
    "useful:float\tdate:float"
)
YELP_FIELDS = dict(
    user_field="user_id",
    item_field="business_id",
    time_field="date",
    rating_field="stars",
)


def _yelp_rows(seed=0):
  """(review, user, business, stars, date) rows in random file order."""
  rng = np.random.default_rng(seed)
  rows = []
  for u, user in enumerate(("u-ann", "u-bo", "u-cy", "u-di")):
    for n in range(7):
      rows.append(
          (
              f"r{u}-{n}",
              user,
              f"b-{rng.integers(15):02d}",
              float(rng.integers(1, 6)),
              float(rng.integers(10**9)),
          )
      )
  order = rng.permutation(len(rows))
  return [rows[i] for i in order]


def _write_inter(path, header, rows):
  lines = [
      "\t".join(str(v) for v in row[:4]) + f"\t0\t{row[4]}" for row in rows
  ]
  path.write_text("\n".join([header, *lines]) + "\n")
  return path


def _sequences(directory):
  """{original user: [original items]} of a prepared dataset."""
  seqs = data.load(directory)
  users = (directory / data.USER_IDS_FILE).read_text().splitlines()
  items = np.array((directory / data.ITEM_IDS_FILE).read_text().splitlines())
  return {
      u: items[seqs.user_items(r) - 1].tolist() for r, u in enumerate(users)
  }


def _expected(rows, min_rating=None):
  by_user = collections.defaultdict(list)
  for _, user, item, stars, when in sorted(rows, key=lambda r: r[4]):
    if min_rating is None or stars >= min_rating:
      by_user[user].append(item)
  return {u: s for u, s in by_user.items() if len(s) >= 3}


@pytest.mark.parametrize("typed", [False, True])
def test_yelp_field_names_round_trip(tmp_path, typed):
  rows = _yelp_rows()
  path = _write_inter(tmp_path / "yelp.inter", YELP_HEADER, rows)
  fields = dict(YELP_FIELDS)
  if typed:  # As written in the header: name:type.
    fields.update(item_field="business_id:token", time_field="date:float")
  for min_rating in (None, 3.0):
    output = prepare.prepare_dataset(
        "yelp",
        path,
        tmp_path / f"out-{min_rating}",
        min_rating=min_rating,
        **fields,
    )
    assert _sequences(output) == _expected(rows, min_rating)
    meta = data.load(output).meta
    assert meta["options"]["item_field"] == "business_id"
    assert meta["options"]["time_field"] == "date"
    assert meta["options"]["rating_field"] == "stars"
    assert "user_field" not in meta["options"]  # RecBole's default name.


def test_default_names_keep_the_options_unchanged(tmp_path):
  rows = _yelp_rows(1)
  header = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
  lines = [f"{u}\t{i}\t{s}\t{t}" for _, u, i, s, t in rows]
  path = tmp_path / "ml.inter"
  path.write_text("\n".join([header, *lines]) + "\n")
  plain = prepare.prepare_dataset("ml", path, tmp_path / "a")
  named = prepare.prepare_dataset(
      "ml",
      path,
      tmp_path / "b",
      user_field="user_id",
      item_field="item_id",
      time_field="timestamp",
      rating_field="rating",
  )
  assert _sequences(plain) == _sequences(named) == _expected(rows)
  assert data.load(named).meta["options"] == {
      "format": "auto",
      "min_rating": None,
      "k_core": 0,
      "dedup_consecutive": False,
  }


@pytest.mark.parametrize(
    "fields,what,field",
    [
        (
            {},
            "no item_id field (the item field; name the right one with "
            "--item_field)",
            None,
        ),
        (
            dict(YELP_FIELDS, user_field="customer_id"),
            "no customer_id field (the user field",
            None,
        ),
        (
            dict(YELP_FIELDS, time_field="timestamp:float", item_field="b"),
            "no b field",
            None,
        ),
        (
            dict(YELP_FIELDS, item_field="stars"),
            "the item field stars is of type float, it must be token",
            "4 (stars)",
        ),
        (
            dict(YELP_FIELDS, time_field="when"),
            "no when field (the time field",
            None,
        ),
    ],
)
def test_missing_or_misnamed_field_is_one_line(tmp_path, fields, what, field):
  path = _write_inter(tmp_path / "yelp.inter", YELP_HEADER, _yelp_rows())
  output = tmp_path / "out"
  with pytest.raises(DataFormatError) as info:
    prepare.prepare_dataset("yelp", path, output, **fields)
  message = str(info.value)
  assert message.startswith(f"{path}, line 1"), message
  assert what in message, message
  assert (
      "the header is review_id:token, user_id:token, business_id:token, "
      "stars:float, useful:float, date:float" in message
  ), message
  if field is not None:
    assert f"field {field}" in message
  assert "\n" not in message
  assert not output.exists()


def test_a_typed_option_with_the_wrong_type(tmp_path):
  path = _write_inter(tmp_path / "yelp.inter", YELP_HEADER, _yelp_rows())
  with pytest.raises(
      ValueError,
      match=r"^--time_field=date:token: the time "
      "field must be of type float, not token$",
  ):
    prepare.prepare_dataset(
        "yelp",
        path,
        tmp_path / "o",
        **dict(YELP_FIELDS, time_field="date:token"),
    )


def test_field_options_only_for_recbole_files(tmp_path):
  path = tmp_path / "s.txt"
  path.write_text("1 2\n1 3\n1 4\n")
  with pytest.raises(
      ValueError,
      match="--item_field only apply to RecBole "
      r"\.inter files; .*s\.txt is in format sasrec",
  ):
    prepare.prepare_dataset("x", path, tmp_path / "o", item_field="movie")


def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  return subprocess.run(
      [sys.executable, "-m", "data_prep.prepare", *args],
      cwd=REPO_ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )


def test_cli_field_flags(tmp_path):
  rows = _yelp_rows(2)
  path = _write_inter(tmp_path / "yelp.inter", YELP_HEADER, rows)
  done = _run_cli(
      "--dataset=yelp",
      f"--input={path}",
      f"--output_dir={tmp_path / 'o'}",
      "--user_field=user_id",
      "--item_field=business_id",
      "--time_field=date",
  )
  assert done.returncode == 0, done.stderr
  assert _sequences(tmp_path / "o") == _expected(rows)
  done = _run_cli(
      "--dataset=yelp", f"--input={path}", f"--output_dir={tmp_path / 'bad'}"
  )
  assert done.returncode == 1
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1, done.stderr
  assert lines[0].startswith(
      f"error: {path}, line 1: the header has no item_id field"
  ), lines[0]
  assert not (tmp_path / "bad").exists()


# .item files ----------------------------------------------------------------

YELP_ITEM = (
    "business_id:token\titem_name:token_seq\tcity:token_seq\tstars:float\n"
    "b-01\tGarage Cafe\tLas Vegas\t4.5\n"
    "b-02\t\tPhoenix\t3.0\n"
    "7\tBurger Place\tToronto\t2.0\n"
)


def test_item_titles_default_and_chosen_field(tmp_path):
  path = tmp_path / "yelp.item"
  path.write_text(YELP_ITEM)
  titles = recbole.read_item_titles(path, item_field="business_id")
  assert titles == {"b-01": "Garage Cafe", "7": "Burger Place"}
  cities = recbole.read_item_titles(
      path, item_field="business_id", title_field="city"
  )
  assert cities == {"b-01": "Las Vegas", "b-02": "Phoenix", "7": "Toronto"}
  gz = tmp_path / "yelp.item.gz"
  gz.write_bytes(gzip.compress(YELP_ITEM.encode()))
  assert recbole.read_item_titles(gz, item_field="business_id") == titles


def test_movielens_item_file(tmp_path):
  path = tmp_path / "ml-1m.item"
  path.write_text(
      "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
      "genre:token_seq\n1\tToy Story\t1995\tAnimation Children's Comedy\n"
      "2\tJumanji\t1995\tAdventure Children's Fantasy\n"
  )
  assert recbole.read_item_titles(path) == {"1": "Toy Story", "2": "Jumanji"}


@pytest.mark.parametrize(
    "text,kwargs,line,what",
    [
        (YELP_ITEM, {}, 1, "no item_id field (the item field"),
        (
            YELP_ITEM,
            dict(item_field="business_id", title_field="name"),
            1,
            "no name field (the title field; name the right one with "
            "--title_field)",
        ),
        (
            "business_id:token\tcity:token_seq\nb\tx\n",
            dict(item_field="business_id"),
            1,
            "no title field (none of movie_title, title, item_name, name",
        ),
        (
            YELP_ITEM + "b-09\tShort line\n",
            dict(item_field="business_id"),
            5,
            "wrong number of fields: the header has 4, the line 2",
        ),
        (
            YELP_ITEM + "b-01\tAgain\tX\t1.0\n",
            dict(item_field="business_id"),
            5,
            "item b-01 is listed twice (first on line 2)",
        ),
    ],
)
def test_item_file_errors_are_one_line(tmp_path, text, kwargs, line, what):
  path = tmp_path / "yelp.item"
  path.write_text(text)
  with pytest.raises(DataFormatError) as info:
    recbole.read_item_titles(path, **kwargs)
  message = str(info.value)
  assert message.startswith(f"{path}, line {line}"), message
  assert what in message, message
  assert "\n" not in message


def test_item_file_beside_the_inter_file(tmp_path):
  inter = tmp_path / "yelp.inter"
  inter.write_text("x")
  assert recbole.item_file_of(inter) is None
  (tmp_path / "yelp.item.gz").write_bytes(b"")
  assert recbole.item_file_of(inter) == tmp_path / "yelp.item.gz"
  assert recbole.item_file_of(tmp_path / "ratings.dat") is None
