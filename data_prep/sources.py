"""Where MovieLens-1M comes from: a local copy, else the GroupLens download.

ML-1M comes in two forms that prepare to the same users, items and
sequences (README, "Getting the data"): SASRec's `ml-1m.txt` (`user item`
lines, already without the items rated fewer than 5 times) and GroupLens'
own `ml-1m.zip` or its `ratings.dat`, which needs the 5-core filter
(`k_core=5`) to drop those items. Only the second can be downloaded (from
GroupLens, checked against its md5); the ids differ between the two forms
(SASRec renumbered users and items), so each is prepared into a directory of
its own.
"""

import dataclasses
import pathlib

from data_prep import download

ML1M = "ml-1m"
ML1M_DIR = "ml-1m"  # Under the data root ($LINREC_DATA_DIR).
SASREC_FILES = ("ml-1m.txt.gz", "ml-1m.txt")
GROUPLENS_FILES = ("ml-1m.zip", "ratings.dat", "ratings.dat.gz")
# The filter that turns GroupLens' ratings into SASRec's ml-1m.txt.
GROUPLENS_OPTIONS = {"k_core": 5}
SASREC_PREPARED, GROUPLENS_PREPARED = "ml-1m", "ml-1m-grouplens"


@dataclasses.dataclass(frozen=True)
class Source:
  """One form of ML-1M and how to prepare it.

  Attributes:
    input_path: the raw file; None: download it when preparing.
    options: the preparation options (overrides of the ml-1m preset).
    prepared_name: the directory name of the prepared arrays.
    description: what it is, for the console.
  """

  input_path: pathlib.Path | None
  options: dict
  prepared_name: str
  description: str


def sasrec_source(data_root: str | pathlib.Path) -> Source:
  """SASRec's ml-1m.txt(.gz) under the data root (input_path None if absent)."""
  path = _first_file(pathlib.Path(data_root) / ML1M_DIR, SASREC_FILES)
  return Source(path, {}, SASREC_PREPARED, f"SASRec's ml-1m.txt ({path})")


def grouplens_source(data_root: str | pathlib.Path) -> Source:
  """GroupLens' ml-1m.zip or ratings.dat under the data root, else the
  download (input_path None)."""
  path = _first_file(pathlib.Path(data_root) / ML1M_DIR, GROUPLENS_FILES)
  where = path or f"downloaded from {download.ML1M_URL}"
  return Source(
      path,
      dict(GROUPLENS_OPTIONS),
      GROUPLENS_PREPARED,
      f"GroupLens ML-1M ({where}), 5-core as SASRec's ml-1m.txt",
  )


def missing_message(data_root: str | pathlib.Path, reason: str) -> str:
  """The one line that tells the user what to download and where to put it."""
  folder = pathlib.Path(data_root) / ML1M_DIR
  return (
      f"--dataset={ML1M}: no local copy in {folder} (none of "
      f"{', '.join(SASREC_FILES + GROUPLENS_FILES)}) and the download failed "
      f"({reason}); download {download.ML1M_URL} into {folder}/ (or point "
      "--data_root / LINREC_DATA_DIR at the folder holding ml-1m/) and rerun"
  )


def _first_file(folder: pathlib.Path, names) -> pathlib.Path | None:
  for name in names:
    if (folder / name).is_file():
      return folder / name
  return None
