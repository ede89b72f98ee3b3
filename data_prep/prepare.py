r"""Prepares a raw interaction dataset for linrec_jax training.

  python -m data_prep.prepare --dataset=ml-1m \
      --input=../shared/data/ml-1m/ml-1m.txt.gz --output_dir=prepared/ml-1m

Reads one of the formats of `data_prep.readers` (auto-detected unless
--format is given), applies the dataset's preset (printed; any option can be
overridden) and writes sequences.npz, meta.json, user_ids.txt and item_ids.txt
atomically. Without --input, ml-1m is downloaded once from GroupLens.
`python -m data_prep` runs the same program.

Every error a user can cause (bad flag, missing or malformed input, corrupt
archive, output in the way) prints one line `error: ...` naming the flag or
the file, line and field, exits with status 1 (2 for a flag error) and leaves
the output as it was.
"""

import json
import math
import pathlib
import sys
from typing import Any, Sequence

from absl import app
from absl import flags
from absl import logging

from data_prep import download
from data_prep import parsing
from data_prep import pipeline
from data_prep import presets
from data_prep import readers
from data_prep import recbole
from data_prep import writer
from linrec_jax import data
from linrec_jax.data import prepared as prepared_data

_FIELD_OPTIONS = tuple(recbole.Fields.OPTIONS.values())
_OPTIONS = (
    "format",
    "min_rating",
    "k_core",
    "dedup_consecutive",
    *_FIELD_OPTIONS,
)
_DOWNLOADABLE = "ml-1m"
# RecBole's Yelp names, as examples in the help.
_FIELD_EXAMPLES = {
    "user": "user_id",
    "item": "business_id",
    "time": "date",
    "rating": "stars",
}


def resolve_options(dataset: str, **overrides) -> dict[str, Any]:
  """The preparation options: the dataset's preset updated by overrides.

  Args:
    dataset: the dataset name (selects the preset).
    **overrides: any of format, min_rating, k_core, dedup_consecutive and
      the RecBole field names user_field, item_field, time_field,
      rating_field (None: RecBole's default name).

  Returns:
    {format, min_rating, k_core, dedup_consecutive}, checked, plus the field
    names that differ from RecBole's defaults (so that datasets prepared
    before these options existed keep their options).
  """
  unknown = set(overrides) - set(_OPTIONS)
  if unknown:
    raise TypeError(f"unknown options {sorted(unknown)}; known: {_OPTIONS}")
  options = {"format": readers.AUTO, **presets.get(dataset).options()}
  options.update(overrides)
  if options["format"] not in (readers.AUTO, *readers.FORMATS):
    raise ValueError(
        f"unknown format {options['format']!r}; known formats: "
        f"{', '.join((readers.AUTO, *readers.FORMATS))}"
    )
  if not isinstance(options["k_core"], int) or options["k_core"] < 0:
    raise ValueError(f"k_core must be an integer >= 0, got {options['k_core']}")
  if options["min_rating"] is not None:
    options["min_rating"] = float(options["min_rating"])
    if not math.isfinite(options["min_rating"]):
      raise ValueError(
          f"min_rating must be a finite number, got {options['min_rating']}"
      )
  options["dedup_consecutive"] = bool(options["dedup_consecutive"])
  fields = recbole.Fields.from_options(options)
  for option in _FIELD_OPTIONS:
    options.pop(option, None)
  options.update(fields.non_default_options())
  return options


def prepare_dataset(
    dataset: str,
    input_path: str | pathlib.Path | Sequence[str | pathlib.Path] | None,
    output_dir: str | pathlib.Path,
    *,
    overwrite: bool = False,
    download_dir: str | pathlib.Path = download.DEFAULT_CACHE_DIR,
    max_input_bytes: int = parsing.MAX_INPUT_BYTES,
    **options,
) -> pathlib.Path:
  """Prepares a dataset; callable from Python (the training job does).

  Args:
    dataset: the dataset name, e.g. "ml-1m" or "gowalla" (selects presets).
    input_path: a file, a list of files read in order, or a directory (see
      `readers.read_interactions`); None downloads ml-1m into download_dir.
    output_dir: the directory to write; nothing is written on failure.
    overwrite: replace an existing prepared dataset in output_dir.
    download_dir: where a downloaded archive is cached.
    max_input_bytes: the most bytes one input may hold, decompressed.
    **options: overrides of the preset (see `resolve_options`).

  Returns:
    output_dir as an absolute Path.

  Raises:
    DataFormatError: malformed input; FileNotFoundError: missing input;
    download.DownloadError: no input given and the download failed.
  """
  options = resolve_options(dataset, **options)
  if not str(output_dir):
    raise ValueError("output_dir is empty")
  writer.check_replaceable(output_dir, overwrite)  # Before the work.
  preset = presets.get(dataset)
  downloaded_from = None
  if input_path is None:
    if dataset != _DOWNLOADABLE:
      raise FileNotFoundError(f"no input given for dataset {dataset!r}")
    input_path = download.fetch_ml1m(download_dir)
    downloaded_from = download.ML1M_URL
  if isinstance(input_path, (str, pathlib.Path)):
    input_path = [input_path]
  interactions = readers.read_interactions(
      input_path,
      options["format"],
      fields=recbole.Fields.from_options(options),
      max_bytes=max_input_bytes,
  )
  prepared = pipeline.build(
      interactions,
      min_rating=options["min_rating"],
      k_core=options["k_core"],
      dedup_consecutive=options["dedup_consecutive"],
  )
  meta = pipeline.metadata(
      prepared,
      dataset=dataset,
      interactions=interactions,
      options=options,
      training={"max_len": preset.max_len, "batch_size": preset.batch_size},
      downloaded_from=downloaded_from,
  )
  logging.info(
      "prepared %s: %d users, %d items, %d interactions",
      dataset,
      meta["num_users"],
      meta["num_items"],
      meta["num_interactions"],
  )
  return writer.write_prepared(
      output_dir,
      items=prepared.items,
      offsets=prepared.offsets,
      user_ids=prepared.user_ids,
      item_ids=prepared.item_ids,
      meta=meta,
      overwrite=overwrite,
  )


def prepare_if_needed(
    dataset: str,
    input_path: str | pathlib.Path | list | None,
    output_dir: str | pathlib.Path,
    **options,
) -> pathlib.Path:
  """Prepares a dataset into output_dir unless it is already prepared there.

  For the training job: the first run prepares, later runs (and resumed runs)
  reuse the directory. An existing directory prepared from another dataset or
  with other options is an error rather than silently used or replaced; one
  prepared alike by an older version (no checksums in meta.json) is prepared
  again in its place, atomically. Leftovers of an interrupted write beside
  output_dir are cleaned up first (`writer.clean_leftovers`).

  Args:
    dataset: the dataset name, e.g. "ml-1m" (selects the presets).
    input_path: the raw file(s); None downloads where supported (ml-1m).
    output_dir: where the prepared dataset lives.
    **options: overrides of the preset, as for `prepare_dataset`.

  Returns:
    output_dir as an absolute Path.

  Raises:
    data.PreparedDataError: output_dir holds a dataset prepared differently,
      or an unreadable meta.json.
  """
  output_dir = pathlib.Path(output_dir).absolute()
  wanted = (dataset, resolve_options(dataset, **options))
  writer.clean_leftovers(output_dir)
  if not (output_dir / data.META_FILE).is_file():
    try:
      return prepare_dataset(dataset, input_path, output_dir, **options)
    except FileExistsError:
      # Another process (e.g. another host) prepared it meanwhile.
      if not (output_dir / data.META_FILE).is_file():
        raise
  meta, _ = prepared_data.read_meta(output_dir)
  found = (meta.get("dataset"), meta.get("options"))
  if found != wanted or meta.get("format_version") != data.FORMAT_VERSION:
    raise data.PreparedDataError(
        output_dir,
        f"holds a dataset prepared differently (dataset, options = {found}, "
        f"format_version={meta.get('format_version')}); wanted {wanted}, "
        f"format_version={data.FORMAT_VERSION}: choose another directory or "
        "delete it",
    )
  if not prepared_data.has_checksums(meta):
    logging.warning(
        "%s was prepared by an older version (no checksums): preparing it "
        "again",
        output_dir,
    )
    return prepare_dataset(
        dataset, input_path, output_dir, overwrite=True, **options
    )
  return output_dir


def _define_flags() -> None:
  """Defines the CLI flags; only when run as a program, so that importing
  prepare_dataset (the training job does) defines no global flags."""
  flags.DEFINE_string("dataset", "ml-1m", "Dataset name; selects the preset.")
  flags.DEFINE_list(
      "input", None, "Input file(s), comma-separated, or a directory."
  )
  flags.DEFINE_string("output_dir", None, "Directory to write.", required=True)
  flags.DEFINE_enum(
      "format", readers.AUTO, (readers.AUTO, *readers.FORMATS), "Input format."
  )
  flags.DEFINE_float("min_rating", None, "Keep ratings >= this (preset).")
  flags.DEFINE_integer("k_core", None, "Iterative k-core (preset).")
  flags.DEFINE_bool(
      "dedup_consecutive", None, "Drop repeated consecutive items (preset)."
  )
  for attribute, option in recbole.Fields.OPTIONS.items():
    flags.DEFINE_string(
        option,
        None,
        f"RecBole .inter files: the {attribute} field, e.g. "
        f"{_FIELD_EXAMPLES[attribute]} (default "
        f"{getattr(recbole.Fields(), attribute)}).",
    )
  flags.DEFINE_bool("overwrite", False, "Replace an existing output_dir.")
  flags.DEFINE_string(
      "download_dir",
      str(download.DEFAULT_CACHE_DIR),
      "Cache for the downloaded ml-1m.zip.",
  )
  flags.DEFINE_integer(
      "max_input_mb",
      parsing.MAX_INPUT_BYTES >> 20,
      "Refuse an input holding more than this many MiB once decompressed.",
      lower_bound=1,
  )


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, its errors on one line (absl adds a usage hint)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {_one_line(e)}", file=sys.stderr)
    sys.exit(2)


def _one_line(error: BaseException) -> str:
  return " ".join(str(error).split("\n"))


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    print(
        f"error: unexpected arguments {argv[1:]} (flags are --name=value)",
        file=sys.stderr,
    )
    return 2
  fv = flags.FLAGS
  # The summary below is printed; errors are one line.
  logging.set_verbosity(logging.WARNING)
  if not fv.output_dir:
    print("error: --output_dir is empty", file=sys.stderr)
    return 2
  overrides = {"format": fv.format}
  for name in ("min_rating", "k_core", "dedup_consecutive", *_FIELD_OPTIONS):
    if fv[name].present:
      overrides[name] = fv[name].value
  print(presets.get(fv.dataset).describe())
  try:
    output_dir = prepare_dataset(
        fv.dataset,
        fv.input,
        fv.output_dir,
        overwrite=fv.overwrite,
        download_dir=fv.download_dir,
        max_input_bytes=fv.max_input_mb << 20,
        **overrides,
    )
  except (ValueError, OSError, download.DownloadError) as e:
    # DataFormatError is a ValueError; FileNotFoundError an OSError.
    print(f"error: {_one_line(e)}", file=sys.stderr)
    return 1
  meta = json.loads((output_dir / data.META_FILE).read_text())
  print(
      f"wrote {output_dir}: {meta['num_users']} users, {meta['num_items']} "
      f"items, {meta['num_interactions']} interactions "
      f"(format {meta['source']['format']}, options {meta['options']})\n"
      f"  lengths {meta['length_stats']}; dropped_users_short="
      f"{meta['dropped_users_short']}; filtering {meta['filtering']}"
  )
  return 0


def run() -> None:
  """The command-line program (`python -m data_prep[.prepare]`)."""
  _define_flags()
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
