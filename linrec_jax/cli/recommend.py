r"""Prints the top-K items of users from a trained model's best checkpoint.

  linrec-recommend --workdir=runs/ml1m_linrec --users=1,2,3
  linrec-recommend --workdir=runs/ml1m_linrec \
      --history=2858,260,1196 --k=5

Users (--users) and items (--history) are the dataset's original ids, as in
the prepared `user_ids.txt` and `item_ids.txt` (for the SASRec ML-1M file
these are SASRec's item ids, not MovieLens MovieIDs). A known user is scored
from their whole history (train + valid + test), cut to the last max_len
items as the model was trained; --history scores a user the model has never
seen, oldest item first. Items already in the history are left out of the
ranking unless --keep_history. For ML-1M the titles come from movies.dat via
SASRec's item map (--titles, --item_map; defaults under $LINREC_DATA_DIR);
for RecBole data from the `.item` file beside the `.inter` file
(--title_field picks its title field).

--engine=streaming scores causal LinRec SASRec models with
`linrec_jax.serving.streaming` (one O(1) update per item) instead of the full
forward pass; both give the same scores up to float32 rounding.
"""

import os
import sys
import zipfile

from absl import app
from absl import flags
from absl import logging

from data_prep import datasets
from data_prep import parsing
from data_prep import recbole
from linrec_jax import cli
from linrec_jax import data
from linrec_jax.cli import failures
from linrec_jax.serving import recommend as recommendations
from linrec_jax.serving import restore
from linrec_jax.training import checkpointing

flags.DEFINE_string("workdir", None, "a training run's --workdir")
flags.DEFINE_list("users", [], "original user ids, comma-separated")
flags.DEFINE_list(
    "history",
    [],
    "original item ids of a new user, oldest first, comma-separated",
)
flags.DEFINE_integer("k", 10, "items to print per user")
flags.DEFINE_bool("keep_history", False, "rank items the user already has")
flags.DEFINE_string(
    "titles",
    None,
    "`id::title::...` file (MovieLens "
    "movies.dat) or RecBole `.item` file; default for ML-1M: "
    "$LINREC_DATA_DIR/ml-1m/movies.dat, for RecBole data: "
    "the .item beside the .inter; '' for none",
)
flags.DEFINE_string(
    "title_field",
    None,
    "RecBole .item files: the title "
    "field (default: the first of "
    f"{', '.join(recbole.TITLE_FIELDS)})",
)
flags.DEFINE_string(
    "item_map",
    None,
    "`<dataset item id> <title file id>` "
    "lines; default for the SASRec ML-1M file: "
    "$LINREC_DATA_DIR/ml-1m/sas_to_original_items.txt; '' "
    "when the ids match",
)
flags.DEFINE_string(
    "data_dir",
    None,
    "the prepared dataset (default: the "
    "data_dir in the workdir's config.json)",
)
flags.DEFINE_enum(
    "engine",
    "full",
    ["full", "streaming"],
    "full forward pass, or linrec_jax.serving.streaming (causal LinRec only)",
)
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS

ML1M_TITLES = "ml-1m/movies.dat"
ML1M_ITEM_MAP = "ml-1m/sas_to_original_items.txt"
ML1M_TITLES_MEMBER = "movies.dat"


def _title_paths(trained, titles, item_map):
  """The --titles and --item_map to use: given, defaults, or None.

  Defaults: for ML-1M, movies.dat under $LINREC_DATA_DIR (through SASRec's
  item map for the SASRec file), else the movies.dat inside the GroupLens
  ml-1m.zip the data came from; for RecBole data, the `.item` file beside
  the `.inter` file.
  """
  meta = trained.seqs.meta
  source = meta.get("source", {})
  files = [f["path"] for f in source.get("files", [])]
  if titles is None and source.get("format") == "recbole" and files:
    item_file = recbole.item_file_of(files[0])
    if item_file is None:
      logging.warning("no titles: no .item file beside %s", files[0])
    return (str(item_file) if item_file else None), item_map or None
  if titles is None and meta.get("dataset") == "ml-1m":
    root = datasets.data_root(None)
    titles = os.path.join(root, ML1M_TITLES)
    if item_map is None and source.get("format") == "sasrec":
      item_map = os.path.join(root, ML1M_ITEM_MAP)
    if (
        not os.path.isfile(titles)
        and source.get("format") == "grouplens"
        and files
        and _zip_holds(files[0], ML1M_TITLES_MEMBER)
    ):
      titles = files[0]
    if not all(os.path.isfile(p) for p in (titles, item_map) if p):
      logging.warning("no titles: %s or %s not found", titles, item_map)
      return None, None
  return titles or None, item_map or None


def _zip_holds(path, suffix) -> bool:
  """Whether `path` is a zip archive with a member ending in `suffix`."""
  if not zipfile.is_zipfile(path):
    return False
  with zipfile.ZipFile(path) as archive:
    return any(name.endswith(suffix) for name in archive.namelist())


def _read_titles(path, item_field, title_field) -> dict[str, str]:
  """Original item id -> title from a RecBole `.item` file, a MovieLens
  `id::title::...` file (movies.dat) or the ml-1m.zip holding one."""
  if path.endswith((recbole.ITEM_SUFFIX, recbole.ITEM_SUFFIX + ".gz")):
    return recbole.read_item_titles(
        path, item_field=item_field, title_field=title_field
    )
  raw, _ = parsing.read_input(path, zip_member_suffix=ML1M_TITLES_MEMBER)
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError:  # GroupLens ships movies.dat in ISO-8859-1.
    text = raw.decode("latin-1")
  by_id = {}
  for line in text.splitlines():
    fields = line.split("::")
    if len(fields) >= 2:
      by_id[fields[0]] = fields[1]
  return by_id


def load_titles(
    trained, item_ids, titles, item_map, title_field=None
) -> dict[int, str]:
  """Internal item id -> title, from the title file and the item map."""
  titles, item_map = _title_paths(trained, titles, item_map)
  if titles is None:
    return {}
  item_field = trained.seqs.meta.get("options", {}).get(
      "item_field", recbole.Fields.item
  )
  by_id = _read_titles(titles, item_field, title_field)
  mapping = {}
  if item_map:
    with open(item_map, encoding="utf-8") as f:
      mapping = dict(line.split()[:2] for line in f if line.strip())
  return {
      internal: by_id[mapping.get(original, original)]
      for original, internal in item_ids.items()
      if mapping.get(original, original) in by_id
  }


def recommend(
    workdir,
    *,
    users=(),
    history=(),
    k=10,
    keep_history=False,
    titles=None,
    item_map=None,
    data_dir=None,
    engine="full",
    title_field=None,
):
  """Top-k items for known users and one new history, with titles.

  Args:
    workdir: a training run's workdir.
    users, history, k, keep_history, engine: as in
      `linrec_jax.serving.recommend.recommend`.
    titles: a `id::title::...` file or a RecBole `.item` file; None: the
      ML-1M or RecBole default; '': none.
    item_map: `<dataset id> <title file id>` lines; None: ML-1M default.
    data_dir: the prepared dataset; None: the one in config.json.
    title_field: the title field of a `.item` file; None: the first of
      `recbole.TITLE_FIELDS` in its header.

  Returns:
    `(trained, results)`: the `restore.Trained` and the records of
    `serving.recommend.recommend`.

  Raises:
    ValueError: an unknown user or item id, or an engine the model lacks.
    FileNotFoundError: no checkpoint, data or title file.
  """
  trained = restore.load_trained(workdir, data_dir=data_dir)
  item_ids = recommendations.read_ids(trained.data_dir, data.ITEM_IDS_FILE)
  return trained, recommendations.recommend(
      trained,
      users=users,
      history=history,
      k=k,
      keep_history=keep_history,
      engine=engine,
      titles=load_titles(trained, item_ids, titles, item_map, title_field),
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.users and not FLAGS.history:
    raise app.UsageError("give --users and/or --history")
  if FLAGS.k < 1:
    raise app.UsageError("--k must be >= 1")
  failures.require_path("workdir", FLAGS.workdir)
  if FLAGS.data_dir is not None:
    failures.require_path("data_dir", FLAGS.data_dir)
  # Orbax logs the failures it raises, tracebacks included; they are
  # reported as one line.
  logging.set_verbosity(logging.FATAL)
  checkpointing.quiet_failed_read_noise()
  with failures.user_errors():
    trained, results = recommend(
        FLAGS.workdir,
        users=FLAGS.users,
        history=FLAGS.history,
        k=FLAGS.k,
        keep_history=FLAGS.keep_history,
        titles=FLAGS.titles,
        item_map=FLAGS.item_map,
        data_dir=FLAGS.data_dir,
        engine=FLAGS.engine,
        title_field=FLAGS.title_field,
    )
  if trained.skipped:
    print(
        f"note: unreadable checkpoints skipped ({'; '.join(trained.skipped)})"
        f"; using step {trained.step}",
        file=sys.stderr,
    )
  print(
      recommendations.format_results(
          trained, results, keep_history=FLAGS.keep_history, engine=FLAGS.engine
      )
  )


def run():
  """The `linrec-recommend` command."""
  cli.show_flags_in_help(__name__)
  app.run(main)


if __name__ == "__main__":
  run()
