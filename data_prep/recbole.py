"""RecBole atomic files: the header, chosen field names, `.item` titles.

RecBole's atomic files (`name.inter`, `name.item`, `name.user`) are
tab-separated, one record per line, under a header of `field:type` entries
with type token, float, token_seq or float_seq. RecBole's own datasets name
their fields differently: MovieLens has `user_id:token item_id:token
rating:float timestamp:float`, Yelp `user_id:token business_id:token
stars:float date:float`. `Fields` holds the names to look for; a user or item
field that is not in the header, or has the wrong type, is a `DataFormatError`
naming the file, the header and the field.

The library uses one thing of the `.item` file: the item titles, which
`experiments.recommend` prints (`read_item_titles`).
"""

import dataclasses
import pathlib

from data_prep import parsing
from data_prep.parsing import DataFormatError

TYPES = ("token", "float", "token_seq", "float_seq")
TOKEN, FLOAT = "token", "float"
INTER_SUFFIX, ITEM_SUFFIX = ".inter", ".item"
# Title fields of RecBole's datasets, tried in this order: MovieLens
# (movie_title), Amazon (title), Yelp (item_name).
TITLE_FIELDS = ("movie_title", "title", "item_name", "name")
_TAB = b"\t"


@dataclasses.dataclass(frozen=True)
class Fields:
  """The names of the fields to read from an `.inter` (and `.item`) file.

  Attributes:
    user: the user field (type token).
    item: the item field (type token); the `.item` file uses it too.
    time: the time field (type float). Under its default name it may be
      missing (the file order is then the time order); a time field given
      another name must be there.
    rating: the rating field (type float), needed only by min_rating.
  """

  user: str = "user_id"
  item: str = "item_id"
  time: str = "timestamp"
  rating: str = "rating"

  # The option names of `data_prep.prepare` (and its flags) per attribute.
  OPTIONS = {
      "user": "user_field",
      "item": "item_field",
      "time": "time_field",
      "rating": "rating_field",
  }
  KINDS = {"user": TOKEN, "item": TOKEN, "time": FLOAT, "rating": FLOAT}

  @classmethod
  def from_options(cls, options: dict) -> "Fields":
    """Fields from `{user_field: ..., ...}`; absent keys keep the default.

    A value may carry its type (`business_id:token`); the type must then be
    the one the field needs.

    Raises:
      ValueError: naming the option, for an empty name or a wrong type.
    """
    names = {}
    for attribute, option in cls.OPTIONS.items():
      if options.get(option) is None:
        continue
      name, _, kind = str(options[option]).strip().partition(":")
      wanted = cls.KINDS[attribute]
      if not name:
        raise ValueError(f"--{option} is empty: give a field name")
      if kind and kind != wanted:
        raise ValueError(
            f"--{option}={options[option]}: the {attribute} field must be "
            f"of type {wanted}, not {kind}"
        )
      names[attribute] = name
    return cls(**names)

  def non_default_options(self) -> dict[str, str]:
    """{option: name} for the fields whose name is not RecBole's default."""
    default = Fields()
    return {
        option: getattr(self, attribute)
        for attribute, option in self.OPTIONS.items()
        if getattr(self, attribute) != getattr(default, attribute)
    }

  def required(self, attribute: str) -> bool:
    """User and item always; time and rating when given another name."""
    if attribute in ("user", "item"):
      return True
    return getattr(self, attribute) != getattr(Fields(), attribute)


def is_header_field(field: bytes) -> bool:
  """Whether `field` reads as RecBole's `name:type`."""
  name, sep, kind = field.strip().partition(b":")
  return bool(sep and name) and kind.decode("ascii", "replace") in TYPES


def parse_header(header: bytes, path) -> list[tuple[str, str]]:
  """The (name, type) of every field of a header line.

  Raises:
    DataFormatError: an entry that is not `name:type`, or a name listed
      twice (which column holds the data would be a guess), naming its
      position.
  """
  fields = []
  for j, field in enumerate(header.split(_TAB)):
    if not is_header_field(field):
      raise DataFormatError(
          path,
          f"header field {field.decode('utf-8', 'replace')!r} is not "
          f"name:type with type in {TYPES}",
          line=1,
          field=str(j + 1),
      )
    name, _, kind = field.strip().decode("utf-8", "replace").partition(":")
    names = [known for known, _ in fields]
    if name in names:
      raise DataFormatError(
          path,
          f"header field {name!r} appears twice (fields "
          f"{names.index(name) + 1} and {j + 1}): which one holds the data is "
          "ambiguous",
          line=1,
          field=str(j + 1),
      )
    fields.append((name, kind))
  return fields


def find_field(
    header: list[tuple[str, str]],
    name: str,
    path,
    *,
    role: str,
    kind: str | None,
    option: str,
    required: bool,
) -> int | None:
  """The column index of field `name` in the header, or None if optional.

  Args:
    header: from `parse_header`.
    name: the field name to find.
    path: the file, for messages.
    role: what the field is for ("user", "item", ...), for messages.
    kind: the type it must have; None accepts any.
    option: the option that names it (e.g. "item_field"), for messages.
    required: whether a missing field is an error.

  Raises:
    DataFormatError: missing (when required) or of the wrong type; the one
      line names the file, the header and the field.
  """
  shown = ", ".join(f"{n}:{k}" for n, k in header)
  for j, (field_name, field_kind) in enumerate(header):
    if field_name != name:
      continue
    if kind is not None and field_kind != kind:
      raise DataFormatError(
          path,
          f"the {role} field {name} is of type {field_kind}, it must be "
          f"{kind}: the header is {shown}",
          line=1,
          field=f"{j + 1} ({name})",
      )
    return j
  if not required:
    return None
  raise DataFormatError(
      path,
      f"the header has no {name} field (the {role} field; name the right "
      f"one with --{option}): the header is {shown}",
      line=1,
  )


def item_file_of(inter_path: str | pathlib.Path) -> pathlib.Path | None:
  """The `.item` file beside an `.inter` file (`x.inter[.gz]` ->
  `x.item[.gz]`), if there is one."""
  path = pathlib.Path(inter_path)
  name = path.name
  for compressed in ("", ".gz"):
    if name.endswith(INTER_SUFFIX + compressed):
      stem = name[: -len(INTER_SUFFIX + compressed)]
      for suffix in (ITEM_SUFFIX, ITEM_SUFFIX + ".gz"):
        candidate = path.with_name(stem + suffix)
        if candidate.is_file():
          return candidate
  return None


def read_item_titles(
    path: str | pathlib.Path,
    *,
    item_field: str = Fields.item,
    title_field: str | None = None,
) -> dict[str, str]:
  """Item id -> title, from a RecBole `.item` file (plain or gzip).

  Args:
    path: the `.item` file.
    item_field: the item field (as in the `.inter` file), type token.
    title_field: the title field (any type; token_seq values are the words
      of the title); None takes the first of TITLE_FIELDS in the header.

  Returns:
    {item id as written: title}; items with an empty title are left out.

  Raises:
    FileNotFoundError: no such file.
    DataFormatError: no such field in the header, a line with the wrong
      number of fields, an empty or repeated item id.
  """
  raw, _ = parsing.read_input(path)
  header_line, body = parsing.split_first_line(raw)
  header = parse_header(header_line, path)
  item_at = find_field(
      header,
      item_field,
      path,
      role="item",
      kind=TOKEN,
      option="item_field",
      required=True,
  )
  if title_field is None:
    present = [name for name, _ in header]
    title_field = next((t for t in TITLE_FIELDS if t in present), None)
    if title_field is None:
      raise DataFormatError(
          path,
          f"the header has no title field (none of {', '.join(TITLE_FIELDS)};"
          " name it with --title_field): the header is "
          f"{', '.join(f'{n}:{k}' for n, k in header)}",
          line=1,
      )
  title_at = find_field(
      header,
      title_field,
      path,
      role="title",
      kind=None,
      option="title_field",
      required=True,
  )
  titles, first_seen = {}, {}
  for line_no, line in enumerate(body.split(b"\n") if body else [], start=2):
    if not line.strip():
      raise DataFormatError(path, "empty line", line=line_no)
    values = line.split(_TAB)
    if len(values) != len(header):
      raise DataFormatError(
          path,
          f"wrong number of fields: the header has {len(header)}, the line "
          f"{len(values)}",
          line=line_no,
      )
    item = values[item_at].strip().decode("utf-8", "replace")
    if not item:
      raise DataFormatError(
          path, "empty id", line=line_no, field=f"{item_at + 1} ({item_field})"
      )
    if item in first_seen:
      raise DataFormatError(
          path,
          f"item {item} is listed twice (first on line {first_seen[item]})",
          line=line_no,
          field=f"{item_at + 1} ({item_field})",
      )
    first_seen[item] = line_no
    title = values[title_at].strip().decode("utf-8", "replace")
    if title:
      titles[item] = title
  return titles
