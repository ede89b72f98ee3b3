"""A training run's progress bar and its estimate of the time left.

The bar is tqdm's, shown only on a terminal (a log file or pipe gets the
periodic text lines instead). The time left counts the training steps still
to run at the measured step rate plus every evaluation still to come (the
validations, then the final validation and test of the best parameters) at
the measured time of one, so it does not jump at each epoch end.
"""

import math
import sys
import time

import tqdm


class Progress:
  """Step rate, evaluation time and the tqdm bar of one training process."""

  def __init__(
      self,
      *,
      total_steps: int,
      steps_per_epoch: int,
      eval_every_epochs: int = 1,
      enabled: bool = True,
  ):
    self._total = total_steps
    self._per_epoch = max(steps_per_epoch, 1)
    self._eval_every = max(eval_every_epochs, 1)
    self._enabled = enabled
    self._bar = None
    self._last = None  # perf_counter of the previous step's end
    self._step_seconds = []  # steady steps (no compile, no epoch end)
    self._eval_seconds = []  # pauses at epoch ends (evaluation, save)
    self._after_epoch = False
    self._first_done = False  # a process's first step compiles: not timed
    self._loss = None

  def epochs(self) -> int:
    return math.ceil(self._total / self._per_epoch)

  def epoch_of(self, step: int) -> int:
    """The 1-based epoch that step `step + 1` belongs to."""
    return min(step // self._per_epoch + 1, self.epochs())

  def start(self, step: int) -> None:
    """Training (re)starts at `step`: opens the bar on a terminal."""
    self._last = time.perf_counter()
    self._after_epoch = False
    if self._enabled and step < self._total:
      self._bar = tqdm.tqdm(
          total=self._total,
          initial=step,
          unit="step",
          dynamic_ncols=True,
          desc=f"epoch {self.epoch_of(step)}/{self.epochs()}",
          leave=False,
          disable=None,
          file=sys.stderr,
      )

  def advance(self, step: int) -> None:
    """Step `step` has finished."""
    now = time.perf_counter()
    if self._last is not None:
      elapsed = now - self._last
      if self._after_epoch:
        steady = self._mean(self._step_seconds) or 0.0
        self._eval_seconds.append(max(elapsed - steady, 0.0))
      elif self._first_done:
        self._step_seconds.append(elapsed)
    self._first_done = True
    self._after_epoch = False
    self._last = now
    if self._bar is not None:
      self._bar.set_description(
          f"epoch {self.epoch_of(step)}/{self.epochs()}", refresh=False
      )
      seconds, with_eval = self.seconds_left(step)
      postfix = {
          "left": "?"
          if seconds is None
          else duration(seconds) + (" incl. eval" if with_eval else "")
      }
      if self._loss is not None:
        postfix["train loss"] = f"{self._loss:.4f}"
      self._bar.set_postfix(postfix, refresh=False)
      if self.is_epoch_end(step):
        self._bar.set_description(
            f"epoch {self.epoch_of(step - 1)}/{self.epochs()} validating",
            refresh=False,
        )
      self._bar.update(step - self._bar.n)

  def is_epoch_end(self, step: int) -> bool:
    return step % self._per_epoch == 0 or step == self._total

  def advance_loss(self, loss: float) -> None:
    """The running train loss, shown on the bar."""
    self._loss = loss

  def steps_per_second(self) -> float | None:
    step_s = self._mean(self._step_seconds)
    return 1.0 / step_s if step_s else None

  def showing_bar(self) -> bool:
    return self._bar is not None and not self._bar.disable

  def epoch_done(self) -> None:
    """An epoch ended; the pause until the next step is an evaluation."""
    self._after_epoch = True

  @staticmethod
  def _mean(values):
    # The last 50 steady steps: the rate of the recent past.
    values = values[-50:]
    return sum(values) / len(values) if values else None

  def evaluations_left(self, step: int) -> int:
    """Validations still to come after `step`, plus the final two."""
    done_epochs = step // self._per_epoch
    left = sum(
        1
        for epoch in range(done_epochs + 1, self.epochs() + 1)
        if epoch % self._eval_every == 0 or epoch == self.epochs()
    )
    return left + 2

  def seconds_left(self, step: int) -> tuple[float | None, bool]:
    """(seconds left or None, whether evaluation time is in it)."""
    step_s = self._mean(self._step_seconds)
    if step_s is None:
      return None, False
    left = (self._total - step) * step_s
    if not self._eval_seconds:
      return left, False
    # The latest pause: the first one also compiled the evaluation.
    eval_s = self._eval_seconds[-1]
    return left + self.evaluations_left(step) * eval_s, True

  def describe_left(self, step: int) -> str:
    seconds, with_eval = self.seconds_left(step)
    if seconds is None:
      return "time left: measuring"
    if with_eval:
      return (
          f"~{duration(seconds)} left incl. evaluation (at most: early "
          "stopping may end sooner)"
      )
    return f"~{duration(seconds)} left + evaluation (not yet timed)"

  def write(self, report, text: str) -> None:
    """Passes a line to `report` without breaking the bar."""
    if not self.showing_bar():
      report(text)
    else:
      with tqdm.tqdm.external_write_mode(file=sys.stdout):
        report(text)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None


def duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
