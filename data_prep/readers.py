"""Readers for the raw interaction formats, all into one `Interactions` form.

Formats (the `--format` names):
  sasrec:    `user item` per line, time-ordered per user (SASRec's ml-1m.txt).
  grouplens: MovieLens `UserID::MovieID::Rating::Timestamp` (ratings.dat, or
             the official ml-1m.zip).
  lightgcn:  `user item item ...` per line; train.txt then test.txt are
             concatenated per user in that order (NGCF/LightGCN Gowalla).
  checkins:  `user<TAB>poi<TAB>unix_time` (e.g. Liu et al. 2017 Gowalla).
  snap:      SNAP loc-gowalla `user<TAB>ISO time<TAB>lat<TAB>lon<TAB>location`.
  recbole:   RecBole atomic `.inter` files with a `name:type` header; the
             user, item, time and rating field names are options
             (`recbole.Fields`).
Every format may be gzip-compressed.
"""

import dataclasses
import pathlib
from typing import Callable, Sequence

import numpy as np

from data_prep import parsing
from data_prep import recbole
from data_prep.parsing import Column, DataFormatError

AUTO = "auto"
SASREC = "sasrec"
GROUPLENS = "grouplens"
LIGHTGCN = "lightgcn"
CHECKINS = "checkins"
SNAP = "snap"
RECBOLE = "recbole"

GROUPLENS_RATINGS = "ratings.dat"
GROUPLENS_DELIMITER = b"::"
LIGHTGCN_PARTS = ("train.txt", "test.txt")
_TAB = b"\t"

USER, ITEM, RATING, TIME = "user", "item", "rating", "timestamp"


@dataclasses.dataclass(frozen=True)
class SourceFile:
  """An input file as read: its path and the sha256 of its stored bytes."""

  path: str
  sha256: str
  size_bytes: int


@dataclasses.dataclass(frozen=True, eq=False)
class Interactions:
  """Raw interactions in file order.

  Attributes:
    users: original user ids [N], int64 or bytes (RecBole string tokens).
    items: original item ids [N], int64 or bytes.
    timestamps: float64 [N] seconds, or None when the format has no time.
    ratings: float64 [N], or None when the format has no rating.
    format: the format name.
    files: the input files in the order read.
  """

  users: np.ndarray
  items: np.ndarray
  timestamps: np.ndarray | None
  ratings: np.ndarray | None
  format: str
  files: tuple[SourceFile, ...]


def read_interactions(
    inputs: Sequence[str | pathlib.Path],
    fmt: str = AUTO,
    *,
    fields: recbole.Fields | None = None,
    max_bytes: int = parsing.MAX_INPUT_BYTES,
) -> Interactions:
  """Reads interaction files of one format, concatenated in the given order.

  Args:
    inputs: files, or one directory holding `train.txt` + `test.txt`
      (lightgcn) or `ratings.dat` (grouplens); `.gz` variants are found too.
    fmt: a format name (see the module docstring) or "auto" to detect it from
      the file names and the first line.
    fields: the field names of RecBole files (default: RecBole's own);
      other names are an error for the other formats.
    max_bytes: the most bytes one input may hold, decompressed.

  Returns:
    The interactions, in file order.

  Raises:
    FileNotFoundError: an input is missing.
    DataFormatError: unknown format, empty input or a malformed line.
  """
  paths = resolve_inputs(inputs)
  if fmt == AUTO:
    fmt = detect_format(paths)
  if fmt not in _READERS:
    raise DataFormatError(
        ", ".join(map(str, paths)),
        f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}",
    )
  fields = recbole.Fields() if fields is None else fields
  if fmt != RECBOLE and fields.non_default_options():
    raise ValueError(
        f"--{', --'.join(fields.non_default_options())} only apply to RecBole "
        f".inter files; {paths[0]} is in format {fmt}"
    )
  columns, files = [], []
  for path in paths:
    suffix = GROUPLENS_RATINGS if fmt == GROUPLENS else None
    data, digest = parsing.read_input(
        path, zip_member_suffix=suffix, max_bytes=max_bytes
    )
    files.append(SourceFile(str(path.absolute()), digest, path.stat().st_size))
    if fmt == RECBOLE:
      columns.append(_read_recbole(data, path, fields))
    else:
      columns.append(_READERS[fmt](data, path))
  return _concatenate(columns, fmt, tuple(files))


def resolve_inputs(inputs: Sequence[str | pathlib.Path]) -> list[pathlib.Path]:
  """Expands a directory input into its data files; checks files exist."""
  paths = [pathlib.Path(p).expanduser() for p in inputs]
  if not paths:
    raise FileNotFoundError("no input file given")
  if len(paths) == 1 and paths[0].is_dir():
    return _files_in_directory(paths[0])
  for path in paths:
    if not path.is_file():
      raise FileNotFoundError(f"input file not found: {path}")
  return paths


def _files_in_directory(directory: pathlib.Path) -> list[pathlib.Path]:
  def find(name):
    for candidate in (directory / name, directory / f"{name}.gz"):
      if candidate.is_file():
        return candidate
    return None

  parts = [find(name) for name in LIGHTGCN_PARTS]
  if all(parts):
    return parts
  ratings = find(GROUPLENS_RATINGS)
  if ratings:
    return [ratings]
  raise FileNotFoundError(
      f"{directory} holds neither {' + '.join(LIGHTGCN_PARTS)} nor "
      f"{GROUPLENS_RATINGS} (optionally .gz); pass the data file itself"
  )


def detect_format(paths: Sequence[pathlib.Path]) -> str:
  """Guesses the format from the file names, then from the first line."""
  path = paths[0]
  name = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
  if name.endswith(".zip") or name == GROUPLENS_RATINGS:
    return GROUPLENS
  if name.endswith(".inter"):
    return RECBOLE
  if name in LIGHTGCN_PARTS:
    return LIGHTGCN
  line = parsing.first_line(path)
  if line is None:
    return GROUPLENS  # A zip archive: only GroupLens data comes zipped.
  if GROUPLENS_DELIMITER in line:
    return GROUPLENS
  tab_fields = line.split(_TAB)
  if len(tab_fields) > 1 and all(map(recbole.is_header_field, tab_fields)):
    return RECBOLE
  if len(tab_fields) == 5 and b"T" in tab_fields[1] and b"-" in tab_fields[1]:
    return SNAP
  if len(tab_fields) == 3:
    return CHECKINS
  fields = line.split()
  if len(fields) == 2:
    return SASREC
  if len(fields) > 2 and _TAB not in line:
    return LIGHTGCN
  raise DataFormatError(
      path,
      f"cannot tell the format from the first line {line[:80]!r}; pass "
      f"--format (one of {', '.join(FORMATS)})",
      line=1,
  )


def _read_sasrec(data: bytes, path) -> dict[str, np.ndarray]:
  columns = [Column(USER, parsing.INT), Column(ITEM, parsing.INT)]
  return parsing.parse_table(data, path, columns)


def _read_grouplens(data: bytes, path) -> dict[str, np.ndarray]:
  columns = [
      Column(USER, parsing.INT),
      Column(ITEM, parsing.INT),
      Column(RATING, parsing.FLOAT),
      Column(TIME, parsing.FLOAT),
  ]
  return parsing.parse_table(data, path, columns, delimiter=GROUPLENS_DELIMITER)


def _read_lightgcn(data: bytes, path) -> dict[str, np.ndarray]:
  users, counts, items = parsing.parse_ragged(data, path, head=USER, rest=ITEM)
  return {USER: np.repeat(users, counts), ITEM: items}


def _read_checkins(data: bytes, path) -> dict[str, np.ndarray]:
  columns = [
      Column(USER, parsing.INT),
      Column(ITEM, parsing.INT),
      Column(TIME, parsing.FLOAT),
  ]
  return parsing.parse_table(data, path, columns, delimiter=_TAB)


def _read_snap(data: bytes, path) -> dict[str, np.ndarray]:
  columns = [
      Column(USER, parsing.INT),
      Column(TIME, parsing.ISO_TIME),
      Column("latitude", parsing.SKIP),
      Column("longitude", parsing.SKIP),
      Column(ITEM, parsing.INT),
  ]
  return parsing.parse_table(data, path, columns, delimiter=_TAB)


def _read_recbole(
    data: bytes, path, fields: recbole.Fields = recbole.Fields()
) -> dict[str, np.ndarray]:
  header_line, body = parsing.split_first_line(data, path, _TAB)
  header = recbole.parse_header(header_line, path)
  keys = {"user": USER, "item": ITEM, "time": TIME, "rating": RATING}
  kinds = {recbole.TOKEN: parsing.TOKEN, recbole.FLOAT: parsing.FLOAT}
  columns = [Column(name, parsing.SKIP) for name, _ in header]
  for attribute, key in keys.items():
    kind = recbole.Fields.KINDS[attribute]
    j = recbole.find_field(
        header,
        getattr(fields, attribute),
        path,
        role=attribute,
        kind=kind,
        option=recbole.Fields.OPTIONS[attribute],
        required=fields.required(attribute),
    )
    if j is not None and columns[j].kind != parsing.SKIP:
      raise DataFormatError(
          path, f"field {header[j][0]} is named for two roles", line=1
      )
    if j is not None:
      columns[j] = Column(key, kinds[kind])
  return parsing.parse_table(body, path, columns, delimiter=_TAB, first_line=2)


def _tokens_as_ints(tokens: np.ndarray) -> np.ndarray:
  """Integer ids when every token is written as its plain integer."""
  if tokens.dtype.kind != "S":
    return tokens
  tokens = np.char.strip(tokens)
  try:
    ints = tokens.astype(np.int64)
  except (ValueError, OverflowError):
    return tokens
  # "007" and "7" are different tokens: only plain integers become ints.
  return ints if np.array_equal(ints.astype(np.bytes_), tokens) else tokens


def _concatenate(parts, fmt, files) -> Interactions:
  def column(key):
    present = [key in p for p in parts]
    if any(present) and not all(present):
      raise DataFormatError(
          ", ".join(f.path for f in files), f"not every file has {key}s"
      )
    return np.concatenate([p[key] for p in parts]) if all(present) else None

  return Interactions(
      users=_tokens_as_ints(column(USER)),
      items=_tokens_as_ints(column(ITEM)),
      timestamps=column(TIME),
      ratings=column(RATING),
      format=fmt,
      files=files,
  )


_READERS: dict[str, Callable[[bytes, pathlib.Path], dict[str, np.ndarray]]] = {
    SASREC: _read_sasrec,
    GROUPLENS: _read_grouplens,
    LIGHTGCN: _read_lightgcn,
    CHECKINS: _read_checkins,
    SNAP: _read_snap,
    RECBOLE: _read_recbole,
}
FORMATS = tuple(_READERS)
