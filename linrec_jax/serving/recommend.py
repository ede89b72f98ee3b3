"""Top-K recommendations of a trained run, as records and as text.

Users and items are the dataset's original ids (the prepared `user_ids.txt`
and `item_ids.txt`). A known user is scored from their whole history
(train + valid + test), cut to the last max_len items as the model was
trained; a new history is scored oldest item first. Titles, when the caller
has them, come in as a mapping (`linrec_jax.cli.recommend` reads them from
the dataset's files).
"""

import os

import numpy as np

from linrec_jax import data
from linrec_jax.serving import ranking
from linrec_jax.serving import restore

# Histories scored per call of the model.
BATCH_SIZE = 256
# History items shown above each ranking, most recent last.
RECENT = 3


def read_ids(directory, name) -> dict[str, int]:
  """Original id -> internal id (line i holds internal id i + 1)."""
  with open(os.path.join(directory, name), encoding="utf-8") as f:
    return {line.strip(): i + 1 for i, line in enumerate(f)}


def _internal(ids, known, what, file_name):
  unknown = [i for i in ids if i not in known]
  if unknown:
    raise ValueError(
        f"unknown {what} id(s) {', '.join(unknown)}: not in the dataset's "
        f"{file_name} ({len(known)} {what}s, e.g. "
        f"{', '.join(list(known)[:3])})"
    )
  return [known[i] for i in ids]


def recommend(
    trained: restore.Trained,
    *,
    users=(),
    history=(),
    k=10,
    keep_history=False,
    engine="full",
    titles=None,
) -> list[dict]:
  """Top-k items for known users and one new history.

  Args:
    trained: a restored run (`restore.load_trained`).
    users: original user ids (`user_ids.txt`).
    history: original item ids (`item_ids.txt`) of a new user, oldest first.
    k: items per user.
    keep_history: rank the items of the history too.
    engine: "full" (forward pass) or "streaming" (causal LinRec only).
    titles: internal item id -> title, or None.

  Returns:
    Per user (then the new history), {"name", "history_length", "recent",
    "items"}, each item a {"item" (original id), "score", "title" (or
    None)}.

  Raises:
    ValueError: an unknown user or item id, or an engine the model lacks.
  """
  directory = trained.data_dir
  item_ids = read_ids(directory, data.ITEM_IDS_FILE)
  rows = _internal(
      users,
      read_ids(directory, data.USER_IDS_FILE),
      "user",
      data.USER_IDS_FILE,
  )
  histories = [trained.seqs.user_items(r - 1) for r in rows]
  names = [f"user {u}" for u in users]
  if history:
    histories.append(
        np.array(_internal(history, item_ids, "item", data.ITEM_IDS_FILE))
    )
    names.append("new user (--history)")
  original = {internal: original for original, internal in item_ids.items()}
  title_of = titles or {}
  results = []
  for start in range(0, len(histories), BATCH_SIZE):
    batch = histories[start : start + BATCH_SIZE]
    scores = ranking.score_histories(trained, batch, engine)
    ranked = ranking.top_items(scores, k, None if keep_history else batch)
    for name, items, (row_ids, row_scores) in zip(names[start:], batch, ranked):
      describe = lambda i, s=None: {
          "item": original[i],
          "score": s,
          "title": title_of.get(i),
      }
      results.append(
          {
              "name": name,
              "history_length": len(items),
              "recent": [describe(i) for i in items[-RECENT:].tolist()],
              "items": [
                  describe(i, float(s))
                  for i, s in zip(row_ids.tolist(), row_scores)
              ],
          }
      )
  return results


def format_results(trained, results, *, keep_history, engine) -> str:
  """The results of `recommend` as text, one block per user."""
  epoch = f" (epoch {trained.best_epoch})" if trained.best_epoch > 0 else ""
  lines = [
      f"{trained.config.model} ({trained.config.attention}) of "
      f"{trained.dataset}: best parameters{epoch} from checkpoint step "
      f"{trained.step}, {engine} engine; the last "
      f"{trained.config.max_len} items of each history are used; "
      f"history items {'kept' if keep_history else 'excluded'}"
  ]
  name = lambda item: item["title"] or f"item {item['item']}"
  for result in results:
    recent = "; ".join(name(item) for item in result["recent"])
    lines.append(
        f"{result['name']} ({result['history_length']} items, "
        f"latest: {recent}):"
    )
    for rank, item in enumerate(result["items"], 1):
      title = f"  {item['title']}" if item["title"] else ""
      lines.append(
          f"  {rank:2d}. item {item['item']:>6}  score "
          f"{item['score']:8.4f}{title}"
      )
  return "\n".join(lines)
