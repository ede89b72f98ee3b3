"""Fast, strict parsing of delimited text tables into NumPy columns.

Parsing runs in two steps. The fast path converts a whole chunk of lines at
once with NumPy (about a second for the 1M lines of MovieLens-1M). Only when
that fails does a line-by-line scan of the failing chunk run, to find the first
malformed line and report it as `DataFormatError` naming the file, the line and
the field. Both paths use the same conversion rules (Python's `int`/`float`,
which NumPy itself calls for byte strings), so whatever the fast path rejects,
the scan finds.

Parsing is exact: what could be read in two ways is an error, never a guess.
Line rules: `\\r\\n` counts as `\\n`; a carriage return without a line feed
(old Mac line ends, which would join lines) and any other control character
than tab and line feed are errors; the text must be valid UTF-8; trailing
blank lines are ignored; a blank line anywhere else is malformed. Integer ids
must be canonical (`5`, `-3`; not `+5`, `05`, `5_000`, ` 5` or `5.0`), so
that two spellings never merge into one id; numbers may not carry spaces or
underscores; ISO times must read exactly `YYYY-MM-DDTHH:MM:SSZ`; string ids
may not start or end with spaces.

Compressed input (gzip, zip) is decompressed up to `MAX_INPUT_BYTES` (a plain
file may not be larger either); beyond it, or when the data is corrupt or the
zip method unsupported, `DataFormatError` says so.
"""

import dataclasses
import gzip
import hashlib
import io
import math
import pathlib
import warnings
import zipfile
import zlib
from typing import Iterator

import numpy as np

# Column kinds.
INT = "int"  # an integer id
FLOAT = "float"  # a finite number (rating, unix time)
TOKEN = "token"  # any non-blank string id (RecBole tokens)
ISO_TIME = "iso_time"  # ISO 8601 UTC time such as 2010-10-19T23:55:27Z
SKIP = "skip"  # counted as a field, not converted

# Lines are converted in chunks of about this many bytes: bounds the memory of
# the Python token lists and the length of the line-by-line scan on failure.
CHUNK_BYTES = 1 << 24
# The most bytes an input may hold once decompressed (data_prep.prepare's
# --max_input_mb overrides it): far above the largest dataset of the presets
# (SNAP Gowalla, about 400 MB), well below what would exhaust memory.
MAX_INPUT_BYTES = 2048 << 20

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_SNIFF_BYTES = 1 << 14
_UTF8_BOM = b"\xef\xbb\xbf"
_NEWLINE = ord("\n")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# The bytes that `bytes.split()` treats as whitespace.
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True
# Bytes that may not appear in text once \r\n became \n.
_FORBIDDEN = np.zeros(256, dtype=bool)
_FORBIDDEN[[b for b in range(32) if b not in b"\t\n"] + [0x7F]] = True
_CR = ord("\r")
_READ_BYTES = 1 << 24
# 10**1 .. 10**19: the digit count of a 64-bit magnitude by searchsorted.
_POWERS_OF_TEN = 10 ** np.arange(1, 20, dtype=np.uint64)
_ISO_TIME_LENGTH = len("2010-10-19T23:55:27Z")


class DataFormatError(ValueError):
  """Malformed or unreadable input data; the message names file, line, field."""

  def __init__(
      self,
      path: str | pathlib.Path,
      message: str,
      *,
      line: int | None = None,
      field: str | None = None,
  ):
    self.path = str(path)
    self.line = line
    self.field = field
    where = self.path
    if line is not None:
      where += f", line {line}"
    if field is not None:
      where += f", field {field}"
    super().__init__(f"{where}: {message}")


@dataclasses.dataclass(frozen=True)
class Column:
  """One field of a delimited line: its name (for messages) and kind."""

  name: str
  kind: str


class _FastPathFailed(Exception):
  """The vectorised conversion of a chunk failed; scan it line by line."""


def read_input(
    path: str | pathlib.Path,
    *,
    zip_member_suffix: str | None = None,
    max_bytes: int = MAX_INPUT_BYTES,
) -> tuple[bytes, str]:
  """Reads a plain, gzip or zip file.

  Args:
    path: the file. Gzip is recognised by its magic bytes, not its name.
    zip_member_suffix: for zip archives, read the member whose name ends with
      this (e.g. "ratings.dat"); a zip without this argument is an error.
    max_bytes: the most bytes the content may hold, decompressed.

  Returns:
    The decompressed bytes and the sha256 hex digest of the file as stored.

  Raises:
    FileNotFoundError: no such file.
    DataFormatError: corrupt or truncated compressed data, an unsupported zip
      member, or content beyond max_bytes.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"input file not found: {path}")
  size = path.stat().st_size
  if size > max_bytes:
    raise DataFormatError(path, f"{size} bytes, {_over_limit(max_bytes)}")
  raw = path.read_bytes()
  digest = hashlib.sha256(raw).hexdigest()
  if raw.startswith(_GZIP_MAGIC):
    try:
      with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        return _read_limited(f, path, max_bytes), digest
    except (OSError, EOFError, zlib.error) as e:
      raise DataFormatError(path, f"not a readable gzip file ({e})") from e
  if raw.startswith(_ZIP_MAGIC):
    return _read_zip_member(path, raw, zip_member_suffix, max_bytes), digest
  return raw, digest


def _over_limit(max_bytes: int) -> str:
  return (
      f"over the input limit of {max_bytes} bytes ({max_bytes >> 20} MiB; "
      "raise it with --max_input_mb)"
  )


def _read_limited(f, path, max_bytes: int) -> bytes:
  """Reads a decompressing stream, stopping once it exceeds max_bytes."""
  parts, total = [], 0
  while part := f.read(min(_READ_BYTES, max_bytes + 1 - total)):
    total += len(part)
    if total > max_bytes:
      raise DataFormatError(
          path,
          f"decompresses to more than {max_bytes} bytes, "
          f"{_over_limit(max_bytes)}",
      )
    parts.append(part)
  return b"".join(parts)


def _read_zip_member(path, raw: bytes, suffix: str | None, max_bytes) -> bytes:
  if suffix is None:
    raise DataFormatError(path, "zip archives are read only for GroupLens data")
  member_name = f"*{suffix}"
  try:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
      members = [i for i in archive.infolist() if i.filename.endswith(suffix)]
      if len(members) != 1:
        raise DataFormatError(
            path,
            f"expected one member ending in {suffix!r}, found "
            f"{[i.filename for i in members]}",
        )
      member = members[0]
      member_name = member.filename
      if member.file_size > max_bytes:
        raise DataFormatError(
            path,
            f"{member.filename} holds {member.file_size} bytes, "
            f"{_over_limit(max_bytes)}",
        )
      with archive.open(member) as f:
        return _read_limited(f, path, max_bytes)
  except NotImplementedError as e:
    raise DataFormatError(
        path, f"zip member {member_name}: unsupported ({e})"
    ) from e
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as e:
    # RuntimeError: an encrypted member.
    raise DataFormatError(path, f"not a readable zip file ({e})") from e


def first_line(path: str | pathlib.Path) -> bytes | None:
  """The first non-blank line of a plain or gzip file; None for a zip."""
  with open(path, "rb") as f:
    magic = f.read(len(_ZIP_MAGIC))
  if magic == _ZIP_MAGIC:
    return None
  opener = gzip.open if magic.startswith(_GZIP_MAGIC) else open
  try:
    with opener(path, "rb") as f:
      head = f.read(_SNIFF_BYTES)
  except (OSError, EOFError, zlib.error) as e:
    raise DataFormatError(path, f"not a readable gzip file ({e})") from e
  head = _normalize(head)
  lines = head.split(b"\n")
  for line_no, line in enumerate(lines, 1):
    if _CR in line:
      _raise_bad_text(line, line_no, path, None, line.index(b"\r"))
    if line.strip():
      return line
  raise DataFormatError(path, "empty input: no data lines")


def split_first_line(
    data: bytes,
    path: str | pathlib.Path | None = None,
    delimiter: bytes | None = None,
) -> tuple[bytes, bytes]:
  """Splits off the first line (a header): returns (header, rest).

  With a path, the header is checked like data lines (`check_text`).
  """
  data = _normalize(data)
  header, _, rest = data.partition(b"\n")
  if path is not None:
    check_text(header, path, 1, delimiter=delimiter)
  return header, rest


def check_text(
    chunk: bytes,
    path: str | pathlib.Path,
    first_line: int,
    *,
    delimiter: bytes | None = None,
    field_names: list[str] | None = None,
) -> None:
  """Rejects control characters, lone carriage returns and invalid UTF-8.

  Args:
    chunk: normalized text (`\\r\\n` already `\\n`).
    path: the file name, for error messages.
    first_line: the line number of the chunk's first line.
    delimiter: the field separator (None: whitespace), to name the field.
    field_names: names of the fields, for messages.

  Raises:
    DataFormatError: naming the line and field of the first bad byte.
  """
  bad = np.flatnonzero(_FORBIDDEN[np.frombuffer(chunk, dtype=np.uint8)])
  position = int(bad[0]) if len(bad) else None
  try:
    chunk.decode("utf-8")
  except UnicodeDecodeError as e:
    position = e.start if position is None else min(position, e.start)
  if position is None:
    return
  line_start = chunk.rfind(b"\n", 0, position) + 1
  line_end = chunk.find(b"\n", position)
  line = chunk[line_start : len(chunk) if line_end < 0 else line_end]
  line_no = first_line + chunk.count(b"\n", 0, line_start)
  _raise_bad_text(
      line, line_no, path, delimiter, position - line_start, field_names
  )


def _raise_bad_text(line, line_no, path, delimiter, column, field_names=None):
  byte = line[column]
  if byte == _CR:
    problem = (
        "carriage return without a line feed (old Mac line ends?): where "
        "lines end is ambiguous; convert the file to \\n line ends"
    )
  elif _FORBIDDEN[byte]:
    problem = f"control character 0x{byte:02x} in the text"
  else:
    problem = "not valid UTF-8 text"
  if delimiter is None:
    fields_before = len(line[:column].split())
    inside = column > 0 and not _WHITESPACE[line[column - 1]]
    field = fields_before if inside else fields_before + 1
    if _WHITESPACE[byte]:
      field = None  # Between fields.
  else:
    field = line[:column].count(delimiter) + 1
  name = None
  if field is not None:
    name = str(field)
    if field_names:
      name += f" ({field_names[min(field, len(field_names)) - 1]})"
  raise DataFormatError(path, problem, line=line_no, field=name)


def parse_table(
    data: bytes,
    path: str | pathlib.Path,
    columns: list[Column],
    *,
    delimiter: bytes | None = None,
    first_line: int = 1,
) -> dict[str, np.ndarray]:
  """Parses lines with a fixed number of fields into one array per column.

  Args:
    data: the text, one record per line.
    path: the file name, for error messages.
    columns: the fields of every line, in order.
    delimiter: the field separator, such as b"\\t" or b"::"; None splits on
      runs of whitespace.
    first_line: the line number of the first line of `data` in the file.

  Returns:
    {column name: array} for every column not of kind SKIP: int64 for INT,
    float64 for FLOAT and ISO_TIME (unix seconds), bytes for TOKEN.

  Raises:
    DataFormatError: on empty input or the first malformed line.
  """
  data = _normalize(data)
  if not data:
    raise DataFormatError(path, "empty input: no data lines")
  parts = {c.name: [] for c in columns if c.kind != SKIP}
  names = [c.name for c in columns]
  for line_no, chunk in _chunks(data, first_line):
    check_text(chunk, path, line_no, delimiter=delimiter, field_names=names)
    try:
      converted = _parse_chunk(chunk, columns, delimiter)
    except _FastPathFailed:
      _raise_first_error(chunk, line_no, path, columns, delimiter)
    for name, values in converted.items():
      parts[name].append(values)
  return {name: np.concatenate(p) for name, p in parts.items()}


def parse_ragged(
    data: bytes, path: str | pathlib.Path, *, head: str, rest: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Parses whitespace-separated integer lines `head x x x ...`.

  Args:
    data: the text.
    path: the file name, for error messages.
    head: the name of the first field (e.g. "user"), for messages.
    rest: the name of the other fields (e.g. "item"), for messages.

  Returns:
    heads int64 [lines], counts int64 [lines] (fields after the head) and
    values int64 [sum(counts)], the fields after the heads, line by line.
  """
  data = _normalize(data)
  if not data:
    raise DataFormatError(path, "empty input: no data lines")
  heads, counts, values = [], [], []
  for line_no, chunk in _chunks(data, 1):
    check_text(chunk, path, line_no, field_names=[head, rest])
    try:
      per_line = _fields_per_line(chunk, None)
      if (per_line == 0).any():
        raise _FastPathFailed
      tokens = _convert(np.array(chunk.split(), dtype=np.bytes_), INT)
    except _FastPathFailed:
      _raise_first_ragged_error(chunk, line_no, path, head, rest)
    head_at = np.cumsum(per_line) - per_line
    heads.append(tokens[head_at])
    counts.append(per_line - 1)
    values.append(np.delete(tokens, head_at))
  return np.concatenate(heads), np.concatenate(counts), np.concatenate(values)


def _normalize(data: bytes) -> bytes:
  if data.startswith(_UTF8_BOM):
    data = data[len(_UTF8_BOM) :]
  if b"\r" in data:
    data = data.replace(b"\r\n", b"\n")
  # Drop trailing blank lines, but keep the last line as it is: white space
  # at its end is data, as on any other line.
  stripped = data.rstrip(b" \t\r\n")
  if not stripped:
    return stripped
  end = data.find(b"\n", len(stripped))
  return data if end < 0 else data[:end]


def _chunks(data: bytes, first_line: int) -> Iterator[tuple[int, bytes]]:
  """Yields (line number of the chunk's first line, chunk) at line ends."""
  start, line_no = 0, first_line
  while start < len(data):
    end = data.find(b"\n", start + CHUNK_BYTES)
    end = len(data) if end < 0 else end
    chunk = data[start:end]
    yield line_no, chunk
    line_no += chunk.count(b"\n") + 1
    start = end + 1


def _fields_per_line(chunk: bytes, delimiter: bytes | None) -> np.ndarray:
  """Number of fields on every line of the chunk, int64 [lines]."""
  buf = np.frombuffer(chunk, dtype=np.uint8)
  newlines = np.flatnonzero(buf == _NEWLINE)
  num_lines = len(newlines) + 1
  if delimiter is None:
    space = _WHITESPACE[buf]
    starts = ~space
    starts[1:] &= space[:-1]
    field_at = np.flatnonzero(starts)
    return np.bincount(np.searchsorted(newlines, field_at), minlength=num_lines)
  delimiter_at = np.flatnonzero(buf == delimiter[0])
  line_of = np.searchsorted(newlines, delimiter_at)
  return np.bincount(line_of, minlength=num_lines) + 1


def _parse_chunk(chunk, columns, delimiter) -> dict[str, np.ndarray]:
  if delimiter is not None and len(delimiter) > 1:
    # A multi-byte delimiter ("::") becomes a tab, if tabs are not data.
    if b"\t" in chunk:
      raise _FastPathFailed
    chunk, delimiter = chunk.replace(delimiter, b"\t"), b"\t"
  if (_fields_per_line(chunk, delimiter) != len(columns)).any():
    raise _FastPathFailed
  if delimiter is None:
    tokens = chunk.split()
  else:
    tokens = chunk.replace(b"\n", delimiter).split(delimiter)
  table = np.array(tokens, dtype=np.bytes_).reshape(-1, len(columns))
  return {
      c.name: _convert(table[:, j], c.kind)
      for j, c in enumerate(columns)
      if c.kind != SKIP
  }


def _convert(values: np.ndarray, kind: str) -> np.ndarray:
  """Vectorised conversion of a bytes column; _FastPathFailed on any error."""
  try:
    if kind == INT:
      out = values.astype(np.int64)
      if not _canonical(out, values).all():
        raise _FastPathFailed
      return out
    if kind == FLOAT:
      out = values.astype(np.float64)
      if not np.isfinite(out).all() or _padded_or_underscored(values).any():
        raise _FastPathFailed
      return out
    if kind == TOKEN:
      stripped = np.strings.strip(values)
      if (stripped == b"").any() or (stripped != values).any():
        raise _FastPathFailed
      return values
    if kind == ISO_TIME:
      return _iso_to_unix(values)
  except (ValueError, OverflowError, TypeError) as e:
    raise _FastPathFailed from e
  raise ValueError(f"unknown column kind {kind!r}")


def _canonical(ints: np.ndarray, tokens: np.ndarray) -> np.ndarray:
  """bool [N]: whether each token is the plain decimal spelling of its int.

  Python's int() also accepts `+5`, `05`, `5_000` and ` 5`; each is longer
  than the plain spelling (sign, then the digits), so comparing lengths is
  exact.
  """
  negative = ints < 0
  magnitude = np.where(negative, -(ints + 1), ints).astype(np.uint64)
  magnitude += negative
  digits = np.searchsorted(_POWERS_OF_TEN, magnitude, side="right") + 1
  return np.strings.str_len(tokens) == digits + negative


def _padded_or_underscored(tokens: np.ndarray) -> np.ndarray:
  """bool [N]: a number written with spaces around it or an underscore."""
  return (np.strings.find(tokens, b"_") >= 0) | (
      np.strings.strip(tokens) != tokens
  )


def _iso_to_unix(values: np.ndarray) -> np.ndarray:
  if (np.strings.str_len(values) != _ISO_TIME_LENGTH).any() or not (
      np.strings.endswith(values, b"Z").all()
  ):
    raise _FastPathFailed
  values = np.strings.rstrip(values, b"Z")
  with warnings.catch_warnings():
    # NumPy warns (and would guess) on explicit time zones: reject them.
    warnings.simplefilter("error")
    try:
      times = values.astype("datetime64[s]")
    except Warning as e:
      raise _FastPathFailed from e
  if np.isnat(times).any():
    raise _FastPathFailed
  # Only the exact spelling: NumPy also reads other forms and normalizes them.
  if (np.datetime_as_string(times, unit="s").astype(np.bytes_) != values).any():
    raise _FastPathFailed
  return times.astype(np.int64).astype(np.float64)


def _field_problem(token: bytes, kind: str) -> str | None:
  """What is wrong with one field, or None; mirrors `_convert`."""
  shown = token.decode("utf-8", "replace")
  if kind == INT:
    try:
      value = int(token)
    except ValueError:
      return f"non-integer id {shown!r}"
    if not _INT64_MIN <= value <= _INT64_MAX:
      return f"id {shown} does not fit in 64 bits"
    if str(value).encode() != token:
      return (
          f"non-canonical integer id {shown!r}: write it as {value} (no "
          "sign +, leading zeros, underscores or spaces)"
      )
  elif kind == FLOAT:
    try:
      value = float(token)
    except ValueError:
      return f"non-numeric value {shown!r}"
    if not math.isfinite(value):
      return f"non-finite value {shown!r}"
    if b"_" in token or token.strip() != token:
      return f"ambiguous number {shown!r}: no spaces or underscores allowed"
  elif kind == TOKEN:
    if not token.strip():
      return "empty id"
    if token.strip() != token:
      return f"id {shown!r} starts or ends with white space"
  elif kind == ISO_TIME:
    try:
      _convert(np.array([token], dtype=np.bytes_), ISO_TIME)
    except _FastPathFailed:
      return f"not an ISO 8601 UTC time {shown!r}"
  return None


def _split_line(line: bytes, delimiter: bytes | None) -> list[bytes]:
  return line.split() if delimiter is None else line.split(delimiter)


def _raise_first_error(chunk, first_line, path, columns, delimiter):
  for offset, line in enumerate(chunk.split(b"\n")):
    line_no = first_line + offset
    if not line.strip():
      raise DataFormatError(path, "empty line", line=line_no)
    fields = _split_line(line, delimiter)
    if len(fields) != len(columns):
      raise DataFormatError(
          path,
          f"wrong number of fields: expected {len(columns)} "
          f"({', '.join(c.name for c in columns)}), got {len(fields)}: "
          f"{_excerpt(line)}",
          line=line_no,
      )
    for j, (token, column) in enumerate(zip(fields, columns)):
      problem = _field_problem(token, column.kind)
      if problem:
        raise DataFormatError(
            path, problem, line=line_no, field=f"{j + 1} ({column.name})"
        )
  raise DataFormatError(path, "could not parse, no malformed line found")


def _raise_first_ragged_error(chunk, first_line, path, head, rest):
  for offset, line in enumerate(chunk.split(b"\n")):
    line_no = first_line + offset
    fields = line.split()
    if not fields:
      raise DataFormatError(path, "empty line", line=line_no)
    for j, token in enumerate(fields):
      problem = _field_problem(token, INT)
      if problem:
        name = head if j == 0 else rest
        raise DataFormatError(
            path, problem, line=line_no, field=f"{j + 1} ({name})"
        )
  raise DataFormatError(path, "could not parse, no malformed line found")


def _excerpt(line: bytes, limit: int = 80) -> str:
  text = line.decode("utf-8", "replace")
  return repr(text if len(text) <= limit else text[:limit] + "...")
