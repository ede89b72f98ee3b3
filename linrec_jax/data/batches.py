"""Fixed-shape batches gathered on demand from the prepared sequences.

Formats in docs/ARCHITECTURE.md: `TrainBatches` (modes all / prefix / cloze,
random access by epoch and index, sharded by process) and `eval_batches`,
both by vectorised indexing into the flat arrays of `data.sequences`. Pure
NumPy; no JAX needed.
"""

from typing import Iterator

import numpy as np

from linrec_jax.constants import PAD_ID
from linrec_jax.data.sequences import history_end
from linrec_jax.data.sequences import leave_one_out
from linrec_jax.data.sequences import Sequences

PAD_RIGHT, PAD_LEFT = "right", "left"
PAD_SIDES = (PAD_RIGHT, PAD_LEFT)
MODE_ALL, MODE_PREFIX, MODE_CLOZE = "all", "prefix", "cloze"
MODES = (MODE_ALL, MODE_PREFIX, MODE_CLOZE)
# Batches whose rows are sorted by length together (`length_bucket`): large
# enough that most batches are nearly uniform in length, small enough that
# every stretch of an epoch mixes all lengths.
BUCKET_POOL = 64
# Tags that keep the random streams of the epoch order and of the cloze masks
# apart although both derive from (seed, epoch).
_ORDER_STREAM, _CLOZE_STREAM = 0, 1


def _gather_windows(
    items: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    width: int,
    pad_side: str,
) -> tuple[np.ndarray, np.ndarray]:
  """The last `width` items of every `items[starts[b]:ends[b]]`, padded.

  Args:
    items: int32 [num_interactions].
    starts: int64 [B], first index a window may use.
    ends: int64 [B], one past the last index of each window.
    width: the window size W.
    pad_side: PAD_RIGHT puts the items first and PAD_ID after them;
      PAD_LEFT puts PAD_ID first and ends every row with its last item.

  Returns:
    windows int32 [B, W] and lengths int64 [B] (real items per row).
  """
  lengths = np.clip(ends - starts, 0, width)
  cols = np.arange(width)
  if pad_side == PAD_RIGHT:
    index = (ends - lengths)[:, None] + cols
    real = cols < lengths[:, None]
  else:
    index = (ends - width)[:, None] + cols
    real = cols >= (width - lengths)[:, None]
  windows = np.where(real, items[np.where(real, index, 0)], PAD_ID)
  return windows.astype(np.int32), lengths


def cloze_mask(
    rng: np.random.Generator,
    real: np.ndarray,
    mask_prob: float,
    max_masked: int | None = None,
) -> np.ndarray:
  """Chooses the positions BERT4Rec masks.

  Each real position is masked with probability mask_prob; a row with real
  positions but none drawn gets its real position with the smallest draw, so
  every such row has at least one masked position. A row with more than
  `max_masked` drawn keeps the `max_masked` of them with the smallest draws
  (a uniform subset); the others keep their item.

  Args:
    rng: the random generator (consumed: one draw per element of `real`).
    real: bool [B, L], True at real (non-padding) positions.
    mask_prob: the masking probability.
    max_masked: at most this many masked positions per row; None: no limit.

  Returns:
    bool [B, L], True at masked positions (always within `real`).
  """
  draws = rng.random(real.shape)
  masked = (draws < mask_prob) & real
  missing = ~masked.any(axis=1) & real.any(axis=1)
  first = np.argmin(np.where(real, draws, np.inf), axis=1)
  masked[missing, first[missing]] = True
  if max_masked is not None and max_masked < real.shape[1]:
    order = np.argsort(np.where(masked, draws, np.inf), axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(real.shape[1])[None], axis=1)
    masked &= rank < max_masked
  return masked


def cloze_batch(window, masked, mask_token, max_predictions):
  """A cloze training batch from windows and their masks.

  Args:
    window: int [B, L] item windows.
    masked: bool [B, L], at most `max_predictions` True per row.
    mask_token: the id that replaces masked items in `inputs`.
    max_predictions: T, the positions scored per row.

  Returns:
    {"inputs": int32 [B, L], "positions": int32 [B, T] (the masked positions
    in order, then unmasked ones), "targets": int32 [B, T] (their items;
    PAD_ID after the masked ones)}.
  """
  positions = np.argsort(~masked, axis=1, kind="stable")[:, :max_predictions]
  predicted = np.take_along_axis(masked, positions, axis=1)
  targets = np.take_along_axis(window, positions, axis=1)
  return {
      "inputs": np.where(masked, mask_token, window).astype(np.int32),
      "positions": positions.astype(np.int32),
      "targets": np.where(predicted, targets, PAD_ID).astype(np.int32),
  }


def expected_cloze_targets(
    lengths: np.ndarray,
    mask_prob: float,
    max_masked: int,
    mask_last_prob: float = 0.0,
) -> np.ndarray:
  """The expected masked (scored) positions of cloze rows of these lengths.

  A row of n >= 1 real positions masks `min(max(D, 1), max_masked)` with
  `D ~ Binomial(n, mask_prob)` (`cloze_mask`), or, for a share
  `mask_last_prob` of the rows, its last position alone; a row with no real
  position masks none.

  Args:
    lengths: int [R], real positions per row.
    mask_prob: the masking probability, in (0, 1].
    max_masked: the cap on masked positions per row (>= 1).
    mask_last_prob: share of rows that mask only their last position.

  Returns:
    float64 [R].
  """
  lengths = np.asarray(lengths, np.int64)
  top = int(lengths.max(initial=0))
  n = np.arange(top + 1)[:, None]
  drawn = np.arange(top + 1)[None, :]
  if mask_prob >= 1:
    pmf = (drawn == n).astype(np.float64)
  else:
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, top + 1)))])
    rest = np.maximum(n - drawn, 0)
    log_pmf = (
        log_fact[n] - log_fact[drawn] - log_fact[rest]
        + drawn * np.log(mask_prob) + rest * np.log1p(-mask_prob)
    )
    pmf = np.where(drawn <= n, np.exp(log_pmf), 0.0)
  masked = np.minimum(np.maximum(drawn, 1), max_masked)
  per_length = np.where(n[:, 0] > 0, pmf @ masked[0], 0.0)
  return (1 - mask_last_prob) * per_length[lengths] + mask_last_prob * (
      lengths > 0
  )


def default_max_predictions(mask_prob: float, max_len: int) -> int:
  """RecBole's BERT4Rec cap on masked positions: int(mask_prob * max_len)."""
  return max(1, min(max_len, int(mask_prob * max_len)))


def _shard_slice(batch_size: int, shard: tuple[int, int]) -> slice:
  """The rows of the global batch that process `shard[0]` of `shard[1]` gets."""
  process, count = shard
  if count < 1 or not 0 <= process < count:
    raise ValueError(f"shard {shard} is not (index, count), index < count")
  if batch_size % count:
    raise ValueError(
        f"batch_size {batch_size} does not divide into {count} shards"
    )
  size = batch_size // count
  return slice(process * size, (process + 1) * size)


class TrainBatches:
  """Fixed-shape training batches, random access by (epoch, index).

  Examples are kept as (row, end) index pairs into `Sequences.items` and
  gathered on demand, so memory stays near the size of the prepared arrays.
  Only training parts are used: no validation or test item ever enters an
  input or a target. The order of an epoch is a permutation drawn from (seed,
  epoch); cloze masks come from (seed, epoch, index): a resumed or sharded run
  gets exactly the same batches.

  Modes (N = max_len):
    all:    a window of up to N + 1 training items; inputs are its first N,
            targets the next item at every position (T = N). The most recent
            window per user, or up to `windows_per_user` windows going back
            in time (0: all). Windows end `window_stride` = S items apart
            (default S = N: they do not overlap). With S < N each target is
            trained once, in the oldest window that holds it: a window
            keeps only its last S targets (all of them in the user's oldest
            window), so every target but the first N of a user sees at least
            N - S preceding items, where windows cut at fixed borders give
            the first target of each window none.
    prefix: every prefix of a training part predicts its next item, from the
            second training item on; inputs are the last N items before the
            target (T = 1), as the official LinRec code trains.
    cloze:  BERT4Rec: windows of up to N items (chosen as in `all`), masked
            by `cloze_mask` with at most T = max_predictions masked positions
            per row; inputs hold mask_token at masked positions; `positions`
            lists the masked positions in order, `targets` their original
            items, and rows with fewer than T end in PAD_ID targets. Only the
            T predicted positions are scored: with RecBole's T = N / 5 the
            output layer costs a fifth of scoring every position. A share
            `mask_last_prob` of the windows masks only its last item
            instead: BERT4Rec's fine-tuning samples, the task evaluation
            asks for.

  With right padding the next-item target of the last real input is at
  position len - 1; with left padding it is at N - 1.

  Length buckets (`length_bucket` = W > 0, right padding): the epoch's
  examples, shuffled as without buckets, are sorted by input length within
  pools of `BUCKET_POOL` batches, cut into batches, and the batches
  shuffled; each batch is cropped to its longest input rounded up to a
  multiple of W (at most N), and in mode cloze its T scored columns to at
  most that width (the masked positions come first, and a row masks at
  most its length). Cropping only drops trailing padding, and positions
  are array indices from the left, so a cropped batch computes exactly what
  its padded form computes; the batches of an epoch differ from those
  without buckets (rows of similar length go together).
  """

  def __init__(
      self,
      seqs: Sequences,
      *,
      mode: str,
      max_len: int,
      batch_size: int,
      seed: int,
      pad_side: str = PAD_RIGHT,
      windows_per_user: int = 1,
      mask_prob: float = 0.2,
      mask_token: int | None = None,
      max_predictions: int | None = None,
      mask_last_prob: float = 0.0,
      length_bucket: int = 0,
      window_stride: int = 0,
  ):
    """Indexes the examples of an epoch.

    Args:
      seqs: the prepared sequences.
      mode: one of MODES.
      max_len: the input length N.
      batch_size: the global batch size B (shards split it).
      seed: a non-negative seed for the epoch order and the masks.
      pad_side: PAD_RIGHT (official, RecBole) or PAD_LEFT.
      windows_per_user: windows per user in modes all and cloze; 0 = all.
      mask_prob: cloze masking probability.
      mask_token: cloze mask id; default num_items + 1.
      max_predictions: cloze positions predicted per row (T); default
        `default_max_predictions(mask_prob, max_len)`, as RecBole.
      mask_last_prob: probability that a cloze window masks only its last
        item (BERT4Rec's fine-tuning samples; RecBole's ft_ratio).
      length_bucket: W > 0 groups rows of similar length and crops each
        batch to a multiple of W (see the class docstring); 0 pads every
        batch to max_len.
      window_stride: S in (0, max_len] for mode all (see the class
        docstring); 0 = max_len.
    """
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if pad_side not in PAD_SIDES:
      raise ValueError(f"pad_side must be one of {PAD_SIDES}, got {pad_side!r}")
    if max_len < 1 or batch_size < 1 or seed < 0 or windows_per_user < 0:
      raise ValueError(
          "max_len and batch_size must be >= 1, seed and windows_per_user >= 0"
      )
    if mode == MODE_CLOZE and not 0 < mask_prob <= 1:
      raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
    if max_predictions is None:
      max_predictions = default_max_predictions(mask_prob, max_len)
    if not 1 <= max_predictions <= max_len:
      raise ValueError(
          f"max_predictions must be in [1, max_len={max_len}], got "
          f"{max_predictions}"
      )
    if not 0 <= mask_last_prob <= 1:
      raise ValueError(
          f"mask_last_prob must be in [0, 1], got {mask_last_prob}"
      )
    if length_bucket < 0:
      raise ValueError(f"length_bucket must be >= 0, got {length_bucket}")
    if length_bucket and pad_side != PAD_RIGHT:
      raise ValueError(
          "length_bucket needs right padding (cropping left padding would "
          "move positions)"
      )
    if not 0 <= window_stride <= max_len:
      raise ValueError(
          f"window_stride must be in [0, max_len={max_len}], got "
          f"{window_stride}"
      )
    if window_stride not in (0, max_len) and mode != MODE_ALL:
      raise ValueError("window_stride < max_len needs mode all")
    self.length_bucket = length_bucket
    self.window_stride = window_stride or max_len
    self.max_predictions = max_predictions
    self.mask_last_prob = mask_last_prob
    self.mode, self.max_len, self.batch_size = mode, max_len, batch_size
    self.seed, self.pad_side, self.mask_prob = seed, pad_side, mask_prob
    self.mask_token = seqs.num_items + 1 if mask_token is None else mask_token
    if mode == MODE_CLOZE and PAD_ID < self.mask_token <= seqs.num_items:
      raise ValueError(f"mask_token {self.mask_token} is an item id")
    self._items = seqs.items
    split = leave_one_out(seqs)
    self._starts = split.train_start
    if mode == MODE_PREFIX:
      self._rows, self._ends = _prefix_examples(
          split.train_start, split.train_end
      )
    else:
      # `all` windows hold N + 1 items with N targets (from the 2nd item
      # on); cloze windows hold N items, all of them possible targets.
      first_target = 1 if mode == MODE_ALL else 0
      self._rows, self._ends, self._skipped = _window_examples(
          split.train_start + first_target,
          split.train_end,
          max_len,
          self.window_stride,
          windows_per_user,
      )
    # Real inputs of every example (the `lengths - 1` / `lengths` of the
    # batch builders below).
    if mode != MODE_ALL:
      self._input_lengths = np.clip(
          self._ends - self._starts[self._rows], 0, max_len
      )
    else:
      self._input_lengths = np.maximum(
          np.clip(self._ends - self._starts[self._rows], 0, max_len + 1) - 1, 0
      )
    self._order = None

  @property
  def num_examples(self) -> int:
    """Examples (rows) in one epoch."""
    return len(self._rows)

  @property
  def mean_targets_per_batch(self) -> float:
    """The targets of a batch on average over the epoch's examples:
    `batch_size` x the mean targets per example (in mode cloze, whose masks
    are drawn anew every epoch, their expectation:
    `expected_cloze_targets`)."""
    if self.mode == MODE_PREFIX:
      return float(self.batch_size)
    if self.mode == MODE_CLOZE:
      expected = expected_cloze_targets(
          self._input_lengths,
          self.mask_prob,
          self.max_predictions,
          self.mask_last_prob,
      )
      if not len(expected):
        return 0.0
      return self.batch_size * float(np.mean(expected))
    targets = self._input_lengths - np.minimum(
        self._skipped, self._input_lengths
    )
    return self.batch_size * float(np.mean(targets)) if len(targets) else 0.0

  @property
  def num_batches(self) -> int:
    """Full batches per epoch (the remainder is dropped)."""
    return self.num_examples // self.batch_size

  def batch(
      self, epoch: int, index: int, *, shard: tuple[int, int] = (0, 1)
  ) -> dict[str, np.ndarray]:
    """Batch `index` of `epoch`, or the rows of it that `shard` gets.

    Args:
      epoch: a non-negative epoch number.
      index: 0 <= index < num_batches.
      shard: (process_index, process_count): the contiguous slice of rows
        of the global batch this process gets; the slices concatenate to the
        global batch.

    Returns:
      {"inputs": int32 [B', N], "positions": int32 [B', T], "targets":
      int32 [B', T]} with B' = batch_size / process_count, as in
      docs/ARCHITECTURE.md.
    """
    if not 0 <= index < self.num_batches:
      raise IndexError(f"batch {index} of {self.num_batches}")
    rows = _shard_slice(self.batch_size, shard)
    first = index * self.batch_size
    picked = self._epoch_order(epoch)[first : first + self.batch_size]
    if self.mode == MODE_CLOZE:
      batch = self._cloze_batch(picked, rows, epoch, index)
    elif self.mode == MODE_PREFIX:
      batch = self._prefix_batch(picked[rows])
    else:
      batch = self._all_batch(picked[rows])
    if not self.length_bucket:
      return batch
    # From the global batch, so that every shard crops alike.
    width = _round_up(
        int(self._input_lengths[picked].max()), self.length_bucket, self.max_len
    )
    columns = {"inputs": width}
    if self.mode == MODE_ALL:
      columns.update(positions=width, targets=width)
    elif self.mode == MODE_CLOZE:
      scored = min(width, self.max_predictions)
      columns.update(positions=scored, targets=scored)
    for key, kept in columns.items():
      batch[key] = np.ascontiguousarray(batch[key][:, :kept])
    return batch

  def _epoch_order(self, epoch: int) -> np.ndarray:
    if epoch < 0:
      raise ValueError(f"epoch must be >= 0, got {epoch}")
    cached = self._order  # One read: safe if a prefetch thread calls too.
    if cached is None or cached[0] != epoch:
      rng = np.random.default_rng([self.seed, epoch, _ORDER_STREAM])
      order = rng.permutation(self.num_examples)
      if self.length_bucket:
        order = self._bucketed(order, rng)
      cached = (epoch, order)
      self._order = cached
    return cached[1]

  def _bucketed(self, order: np.ndarray, rng) -> np.ndarray:
    """The full batches of `order`, sorted by length within pools, with the
    batch order shuffled."""
    size = self.batch_size
    order = order[: self.num_batches * size]
    pool = BUCKET_POOL * size
    pools = [order[i : i + pool] for i in range(0, len(order), pool)]
    order = np.concatenate(
        [p[np.argsort(self._input_lengths[p], kind="stable")] for p in pools]
    )
    batches = order.reshape(self.num_batches, size)
    return batches[rng.permutation(self.num_batches)].reshape(-1)

  def _prefix_batch(self, picked: np.ndarray) -> dict[str, np.ndarray]:
    rows, targets_at = self._rows[picked], self._ends[picked]
    inputs, lengths = _gather_windows(
        self._items, self._starts[rows], targets_at, self.max_len, self.pad_side
    )
    last = lengths - 1 if self.pad_side == PAD_RIGHT else self.max_len - 1
    positions = np.broadcast_to(last, lengths.shape)
    return {
        "inputs": inputs,
        "positions": positions.astype(np.int32)[:, None],
        "targets": self._items[targets_at].astype(np.int32)[:, None],
    }

  def _all_batch(self, picked: np.ndarray) -> dict[str, np.ndarray]:
    rows, ends = self._rows[picked], self._ends[picked]
    window, lengths = _gather_windows(
        self._items, self._starts[rows], ends, self.max_len + 1, self.pad_side
    )
    inputs = window[:, :-1]
    if self.pad_side == PAD_RIGHT:
      # A window shorter than N + 1 would show its last item (the target of
      # the input before it) as an input: a leak for non-causal attention.
      last_input = (lengths - 1)[:, None]
      inputs = np.where(np.arange(self.max_len) < last_input, inputs, PAD_ID)
    # With left padding the first real item follows a padding input: no
    # target there either.
    targets = np.where(inputs != PAD_ID, window[:, 1:], PAD_ID)
    if self.window_stride < self.max_len:
      # Windows other than a user's oldest are full (no padding), so their
      # first `skipped` columns are the targets a later window trains.
      skipped = self._skipped[picked][:, None]
      targets = np.where(np.arange(self.max_len) < skipped, PAD_ID, targets)
    return {
        "inputs": np.ascontiguousarray(inputs),
        "positions": self._all_positions(len(rows)),
        "targets": targets.astype(np.int32),
    }

  def _cloze_batch(self, picked, shard_rows, epoch, index):
    rows, ends = self._rows[picked], self._ends[picked]
    lengths = self._input_lengths[picked]
    cols = np.arange(self.max_len)
    if self.pad_side == PAD_RIGHT:
      real = cols < lengths[:, None]
    else:
      real = cols >= (self.max_len - lengths)[:, None]
    # Drawn for the global batch, then sliced: shards agree on the masks.
    rng = np.random.default_rng([self.seed, epoch, index, _CLOZE_STREAM])
    masked = cloze_mask(rng, real, self.mask_prob, self.max_predictions)
    last_only = rng.random(len(rows)) < self.mask_last_prob
    if last_only.any():
      last = lengths - 1 if self.pad_side == PAD_RIGHT else self.max_len - 1
      masked[last_only] = (
          cols == np.broadcast_to(last, lengths.shape)[last_only, None]
      )
    masked = masked[shard_rows]
    rows, ends = rows[shard_rows], ends[shard_rows]
    window, _ = _gather_windows(
        self._items, self._starts[rows], ends, self.max_len, self.pad_side
    )
    return cloze_batch(window, masked, self.mask_token, self.max_predictions)

  def _all_positions(self, size: int) -> np.ndarray:
    positions = np.arange(self.max_len, dtype=np.int32)
    return np.tile(positions, (size, 1))


def _round_up(length: int, multiple: int, limit: int) -> int:
  """`length` rounded up to a multiple of `multiple`, in `[1, limit]`."""
  return min(max(-(-length // multiple) * multiple, multiple), limit)


def _prefix_examples(starts, ends) -> tuple[np.ndarray, np.ndarray]:
  """(row int32, target index int64) for every target from the 2nd item."""
  counts = np.maximum(ends - starts - 1, 0)
  rows = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
  rank = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
  return rows, starts[rows] + 1 + rank


def _window_examples(
    first_targets, ends, length, stride, windows_per_user
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Windows of `length` targets going back from each user's end.

  Window k of a user ends at `ends - k * stride` (exclusive) and holds the
  targets of the `length` positions before; there are just enough windows
  for the oldest to reach `first_targets` (or `windows_per_user`, if fewer).

  Returns:
    (row int32, window end int64, skipped int64), one entry per window:
    `skipped` counts the leading targets of the window that the next older
    window trains (`length - stride`; 0 in a user's oldest window).
  """
  covered = np.maximum(ends - first_targets, 0)
  counts = np.where(
      covered > 0, 1 + np.maximum(-(-(covered - length) // stride), 0), 0
  )
  if windows_per_user:
    counts = np.minimum(counts, windows_per_user)
  rows = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
  back = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
  oldest = back == counts[rows] - 1
  skipped = np.where(oldest, 0, length - stride)
  return rows, ends[rows] - back * stride, skipped


def num_eval_batches(seqs: Sequences, batch_size: int) -> int:
  """Evaluation batches covering every user once (the last one padded)."""
  return -(-seqs.num_users // batch_size)


def eval_batches(
    seqs: Sequences,
    stage: str,
    *,
    max_len: int,
    batch_size: int,
    pad_side: str = PAD_RIGHT,
    mask_token: int | None = None,
    with_history: bool = False,
    max_history: int | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[dict[str, np.ndarray]]:
  """Evaluation batches over all users, in user order, each user once.

  Validation input: the training part; test input: the training part plus
  the validation item; both cut to their last max_len items. With
  mask_token (BERT4Rec) the input is the last max_len - 1 of those items
  followed by mask_token, and `positions` points at it.

  Args:
    seqs: the prepared sequences.
    stage: VALID or TEST.
    max_len: the input length L.
    batch_size: the global batch size B; the last batch is padded with rows
      whose `valid` is False.
    pad_side: PAD_RIGHT or PAD_LEFT.
    mask_token: None (next-item models) or the mask id (BERT4Rec).
    with_history: add `history`, every item before the target.
    max_history: the width of `history`; default the longest history of
      the stage, so the shape is the same in every batch.
    shard: (process_index, process_count); each process gets its
      contiguous slice of the rows of every global batch.

  Yields:
    {"inputs": int32 [B', L], "positions": int32 [B'], "targets": int32
    [B'], "valid": bool [B'], "users": int32 [B'] (user ids 1..num_users, 0
    on padding rows), optionally "history": int32 [B', max_history]}, with
    B' = batch_size / process_count.
  """
  if pad_side not in PAD_SIDES:
    raise ValueError(f"pad_side must be one of {PAD_SIDES}, got {pad_side!r}")
  width = max_len if mask_token is None else max_len - 1
  if width < 1:
    raise ValueError(f"max_len {max_len} is too short")
  rows_of_shard = _shard_slice(batch_size, shard)
  targets_at = history_end(seqs, stage)
  starts = seqs.offsets[:-1]
  if with_history:
    longest = int((targets_at - starts).max())
    max_history = longest if max_history is None else max_history
    if max_history < longest:
      raise ValueError(f"max_history {max_history} < longest history {longest}")
  for index in range(num_eval_batches(seqs, batch_size)):
    first = index * batch_size
    rows = np.arange(first, first + batch_size)[rows_of_shard]
    valid = rows < seqs.num_users
    rows = np.where(valid, rows, 0)
    window, lengths = _gather_windows(
        seqs.items, starts[rows], targets_at[rows], width, pad_side
    )
    if mask_token is None:
      inputs = window
      positions = lengths - 1 if pad_side == PAD_RIGHT else width - 1
    else:
      inputs = np.zeros((len(rows), max_len), np.int32)
      inputs[:, :width] = window
      positions = lengths if pad_side == PAD_RIGHT else width
      positions = np.broadcast_to(positions, rows.shape)
      inputs[np.arange(len(rows)), positions] = mask_token
    batch = {
        "inputs": np.where(valid[:, None], inputs, PAD_ID).astype(np.int32),
        "positions": np.where(valid, positions, 0).astype(np.int32),
        "targets": np.where(valid, seqs.items[targets_at[rows]], PAD_ID),
        "valid": valid,
        "users": np.where(valid, rows + 1, 0).astype(np.int32),
    }
    batch["targets"] = batch["targets"].astype(np.int32)
    if with_history:
      history, _ = _gather_windows(
          seqs.items, starts[rows], targets_at[rows], max_history, PAD_RIGHT
      )
      batch["history"] = np.where(valid[:, None], history, PAD_ID)
    yield batch
