"""Finds or prepares the arrays of a dataset named on the command line."""

import os

from data_prep import download
from data_prep import prepare
from data_prep import sources
from linrec_jax import configs
from linrec_jax import data

DEFAULT_DATA_ROOT = "../shared/data"


def data_root(flag_value: str | None) -> str:
  """--data_root, else $LINREC_DATA_DIR, else ../shared/data."""
  return flag_value or os.environ.get("LINREC_DATA_DIR", DEFAULT_DATA_ROOT)


def prepared_dir(dataset: str, root: str | None, prepared_root: str) -> str:
  """The prepared directory of `dataset`, preparing it on first use.

  Args:
    dataset: a name of `configs.DATASETS`, or a directory already prepared
      by `data_prep` (holding meta.json).
    root: where the raw datasets lie (see `data_root`).
    prepared_root: prepared datasets are cached in `prepared_root/<name>`.

  ML-1M is SASRec's ml-1m.txt when there is a local copy (or one prepared
  before), else GroupLens' ml-1m.zip or ratings.dat, local or downloaded,
  prepared with SASRec's 5-core filter into `prepared_root/ml-1m-grouplens`
  (`data_prep.sources`).

  Raises:
    ValueError: naming --dataset or --data_root when nothing fits.
  """
  if os.path.isfile(os.path.join(dataset, data.META_FILE)):
    return dataset
  if dataset not in configs.DATASETS:
    raise ValueError(
        f"--dataset={dataset!r} is neither one of "
        f"{', '.join(configs.DATASETS)} nor a prepared directory "
        f"(no {data.META_FILE} there; prepare one with data_prep.prepare)"
    )
  if dataset == sources.ML1M:
    return _prepared_ml1m(data_root(root), prepared_root)
  raw = os.path.join(data_root(root), configs.DATASETS[dataset])
  output = os.path.join(prepared_root, dataset)
  if not os.path.isfile(os.path.join(output, data.META_FILE)):
    if not os.path.exists(raw):
      raise ValueError(
          f"--data_root: {raw} not found; point --data_root (or "
          f"LINREC_DATA_DIR) at the folder holding {configs.DATASETS[dataset]}"
      )
    print(f"preparing {dataset} from {raw} into {output}", flush=True)
  return str(
      prepare.prepare_if_needed(dataset.removesuffix("-sample"), raw, output)
  )


def _prepared_ml1m(root: str, prepared_root: str) -> str:
  """The prepared ML-1M: SASRec's file if at hand, else GroupLens'."""
  source = sources.sasrec_source(root)
  if source.input_path is None and not _is_prepared(
      os.path.join(prepared_root, source.prepared_name)
  ):
    source = sources.grouplens_source(root)
  output = os.path.join(prepared_root, source.prepared_name)
  if not _is_prepared(output):
    print(
        f"preparing {sources.ML1M} from {source.description} into {output}",
        flush=True,
    )
  try:
    return str(
        prepare.prepare_if_needed(
            sources.ML1M, source.input_path, output, **source.options
        )
    )
  except download.DownloadError as error:
    raise ValueError(sources.missing_message(root, error.reason)) from error


def _is_prepared(directory: str) -> bool:
  return os.path.isfile(os.path.join(directory, data.META_FILE))
