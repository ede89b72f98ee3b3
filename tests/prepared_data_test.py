"""Tests of linrec_jax.data.prepared: checksums, verification, fingerprints.

Every damaged directory must fail to load with a one-line PreparedDataError
naming the damaged file, and loading must change nothing in the directory.
Checksums are recomputed here with hashlib, independently of the code.
"""

import hashlib
import io
import json
import logging
import pathlib

import numpy as np
import pytest

from data_prep import prepare
from linrec_jax import data
from linrec_jax.data import prepared as prepared_data
from linrec_jax.data.prepared import PreparedDataError

# Users 1, 2, 3 with 4, 3 and 3 items; original item ids 5..9.
RAW = "1 5\n1 6\n1 7\n1 8\n2 6\n2 5\n2 9\n3 9\n3 8\n3 7\n"
ITEMS = [1, 2, 3, 4, 2, 1, 5, 5, 4, 3]
OFFSETS = [0, 4, 7, 10]


@pytest.fixture
def prepared(tmp_path):
  raw = tmp_path / "s.txt"
  raw.write_text(RAW)
  return prepare.prepare_dataset("tiny", raw, tmp_path / "prepared")


def _snapshot(directory: pathlib.Path) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _meta(directory):
  return json.loads((directory / data.META_FILE).read_text())


def _write_meta(directory, meta):
  (directory / data.META_FILE).write_text(json.dumps(meta, indent=2))


def _resign(directory):
  """Rewrites meta.json's checksums to match the files: a consistent liar."""
  meta = _meta(directory)
  for name in ("sequences.npz", "user_ids.txt", "item_ids.txt"):
    raw = (directory / name).read_bytes()
    meta["files"][name] = {
        "size_bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
  _write_meta(directory, meta)


def _save_arrays(directory, items, offsets):
  buffer = io.BytesIO()
  np.savez(
      buffer,
      items=np.asarray(items, np.int32),
      offsets=np.asarray(offsets, np.int64),
  )
  (directory / "sequences.npz").write_bytes(buffer.getvalue())


def _expect_error(directory, file_name, *fragments):
  """Loading fails naming the file in one line; the directory is unchanged."""
  before = _snapshot(directory)
  for load in (data.load, prepared_data.fingerprint):
    with pytest.raises(PreparedDataError) as info:
      load(directory)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(directory / file_name)), message
    for fragment in fragments:
      assert fragment in message, message
    assert isinstance(info.value, ValueError)
  assert _snapshot(directory) == before


def test_meta_records_every_file_and_fingerprint_covers_them(prepared):
  meta = _meta(prepared)
  for name in ("sequences.npz", "user_ids.txt", "item_ids.txt"):
    raw = (prepared / name).read_bytes()
    assert meta["files"][name] == {
        "size_bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
  assert (prepared / "item_ids.txt").read_text() == "5\n6\n7\n8\n9\n"
  seqs = data.load(prepared)
  np.testing.assert_array_equal(seqs.items, ITEMS)
  np.testing.assert_array_equal(seqs.offsets, OFFSETS)
  expected = hashlib.sha256((prepared / "meta.json").read_bytes()).hexdigest()
  assert seqs.fingerprint == expected
  assert data.fingerprint(prepared) == expected


def test_same_data_same_fingerprint_other_data_other(prepared, tmp_path):
  raw = tmp_path / "s.txt"
  again = prepare.prepare_dataset("tiny", raw, tmp_path / "again")
  assert data.fingerprint(again) == data.fingerprint(prepared)
  raw.write_text(RAW.replace("3 7", "3 6"))
  other = prepare.prepare_dataset("tiny", raw, tmp_path / "other")
  assert data.fingerprint(other) != data.fingerprint(prepared)


@pytest.mark.parametrize(
    "key,value,file_name,fragment",
    [
        ("num_users", 4, "sequences.npz", "num_users is 4"),
        ("num_users", 2, "sequences.npz", "num_users is 2"),
        ("num_interactions", 11, "sequences.npz", "num_interactions is 11"),
        ("num_items", 4, "sequences.npz", "outside 1..4"),
        ("num_items", 6, "item_ids.txt", "5 ids, but meta.json num_items is 6"),
        ("num_items", "5", "meta.json", "num_items is '5', not a count"),
        ("num_users", True, "meta.json", "not a count"),
        ("format_version", 2, "meta.json", "unknown format_version 2"),
        (
            "length_stats",
            {"min": 3, "max": 5},
            "sequences.npz",
            "length_stats say 3..5",
        ),
    ],
)
def test_lying_meta(prepared, key, value, file_name, fragment):
  _write_meta(prepared, {**_meta(prepared), key: value})
  _expect_error(prepared, file_name, fragment)


def test_unreadable_meta(prepared):
  (prepared / "meta.json").write_text('{"num_users": 3,')
  _expect_error(prepared, "meta.json", "not valid JSON")
  (prepared / "meta.json").write_text("[1, 2]")
  _expect_error(prepared, "meta.json", "not a JSON object")


def test_shuffled_and_truncated_arrays(prepared):
  original = (prepared / "sequences.npz").read_bytes()
  _save_arrays(prepared, np.array(ITEMS)[::-1], OFFSETS)
  assert len((prepared / "sequences.npz").read_bytes()) == len(original)
  _expect_error(prepared, "sequences.npz", "sha256 differs", "prepare it again")
  (prepared / "sequences.npz").write_bytes(original[:-10])
  _expect_error(
      prepared,
      "sequences.npz",
      f"{len(original) - 10} bytes",
      f"records {len(original)}",
  )
  (prepared / "sequences.npz").write_bytes(original)
  assert data.load(prepared).num_users == 3


def test_id_file_shorter_than_the_catalogue(prepared):
  path = prepared / "item_ids.txt"
  path.write_text("5\n6\n7\n8\n")
  _expect_error(prepared, "item_ids.txt", "truncated or replaced")
  _resign(prepared)
  _expect_error(prepared, "item_ids.txt", "4 ids, but meta.json num_items is 5")
  (prepared / "user_ids.txt").write_text("1\n2\n3\n4\n")
  path.write_text("5\n6\n7\n8\n9\n")
  _resign(prepared)
  _expect_error(prepared, "user_ids.txt", "4 ids, but meta.json num_users is 3")


@pytest.mark.parametrize(
    "file_name,contents,fragment",
    [
        ("item_ids.txt", "5\n6\n7\n8\n9", "no line end"),
        ("item_ids.txt", "5\n6\n\n8\n9\n", "line 3 is empty"),
        ("item_ids.txt", "5\n6\n7\n6\n9\n", "line 4 repeats the id b'6'"),
        ("sequences.npz", "not a zip", "not a readable npz"),
    ],
)
def test_consistently_signed_but_malformed_files(
    prepared, file_name, contents, fragment
):
  (prepared / file_name).write_text(contents)
  _resign(prepared)
  _expect_error(prepared, file_name, fragment)


@pytest.mark.parametrize(
    "items,offsets,fragment",
    [
        (ITEMS, [0, 7, 4, 10], "offsets decrease at row 2"),
        (ITEMS, [0, 4, 7, 9], "offsets must run from 0 to len(items) = 10"),
        ([0] + ITEMS[1:], OFFSETS, "span 0..5, outside 1..5"),
        (ITEMS[:9] + [6], OFFSETS, "span 1..6, outside 1..5"),
        (ITEMS, [0, 2, 7, 10], "user 1 has fewer than 3"),
    ],
)
def test_consistently_signed_but_inconsistent_arrays(
    prepared, items, offsets, fragment
):
  _save_arrays(prepared, items, offsets)
  _resign(prepared)
  _expect_error(prepared, "sequences.npz", fragment)


def test_consistently_signed_but_wrong_dtypes_or_arrays(prepared):
  buffer = io.BytesIO()
  np.savez(
      buffer,
      items=np.array(ITEMS, np.int64),
      offsets=np.array(OFFSETS, np.int64),
  )
  (prepared / "sequences.npz").write_bytes(buffer.getvalue())
  _resign(prepared)
  _expect_error(prepared, "sequences.npz", "dtypes int64/int64")
  buffer = io.BytesIO()
  np.savez(buffer, items=np.array(ITEMS, np.int32))
  (prepared / "sequences.npz").write_bytes(buffer.getvalue())
  _resign(prepared)
  _expect_error(prepared, "sequences.npz", "holds arrays ['items']")


def test_bad_checksum_records(prepared):
  meta = _meta(prepared)
  del meta["files"]["user_ids.txt"]
  _write_meta(prepared, meta)
  _expect_error(
      prepared, "meta.json", "no valid size_bytes/sha256 for user_ids.txt"
  )


def test_missing_files(prepared, tmp_path):
  (prepared / "user_ids.txt").unlink()
  with pytest.raises(
      prepared_data.MissingPreparedDataError, match="missing user_ids.txt"
  ) as info:
    data.load(prepared)
  assert isinstance(info.value, FileNotFoundError)
  assert isinstance(info.value, PreparedDataError)
  with pytest.raises(FileNotFoundError, match="missing sequences.npz"):
    data.load(tmp_path / "nowhere")


def _make_legacy(directory):
  meta = _meta(directory)
  del meta["files"]
  _write_meta(directory, meta)


def test_legacy_directory_is_refused_with_a_hint(prepared):
  _make_legacy(prepared)
  _expect_error(
      prepared,
      "meta.json",
      "records no checksums",
      f"python -m data_prep.prepare --overwrite --output_dir={prepared}",
  )


def test_prepare_if_needed_prepares_a_legacy_directory_again(tmp_path, caplog):
  raw = tmp_path / "s.txt"
  raw.write_text(RAW)
  output = tmp_path / "prepared"
  prepare.prepare_if_needed("tiny", raw, output)
  _make_legacy(output)
  with caplog.at_level(logging.WARNING):
    assert prepare.prepare_if_needed("tiny", raw, output) == output
  assert "older version" in caplog.text
  seqs = data.load(output)
  np.testing.assert_array_equal(seqs.items, ITEMS)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "s.txt"]
  _make_legacy(output)
  with pytest.raises(PreparedDataError, match="prepared differently"):
    prepare.prepare_if_needed("tiny", raw, output, k_core=2)
  (output / "meta.json").write_text("{")
  with pytest.raises(PreparedDataError, match="meta.json: not valid JSON"):
    prepare.prepare_if_needed("tiny", raw, output)
