"""Tests of `linrec_jax.training.progress`: epoch k/N and the time left."""

import pytest

from linrec_jax.training import progress


class _Clock:

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


@pytest.fixture(name="clock")
def _clock(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(progress.time, "perf_counter", clock)
  return clock


def test_time_left_counts_steps_and_every_evaluation_still_to_come(clock):
  # 2 epochs of 3 steps; steps take 1 s, the first (compiling) 10 s; the
  # pause at the epoch end (validation) takes 5 s beyond a step.
  meter = progress.Progress(total_steps=6, steps_per_epoch=3, enabled=False)
  meter.start(0)
  for step, now in ((1, 10.0), (2, 11.0), (3, 12.0)):
    clock.now = now
    meter.advance(step)
  assert meter.seconds_left(3) == (3.0, False)  # no evaluation timed yet
  meter.epoch_done()
  clock.now = 18.0  # 5 s of validation + the 1 s step 4
  meter.advance(4)
  # 2 steps x 1 s + (epoch 2's validation + the final validation and test
  # of the best parameters) x 5 s.
  assert meter.seconds_left(4) == (pytest.approx(2.0 + 3 * 5.0), True)
  assert meter.evaluations_left(4) == 3
  assert "incl. evaluation" in meter.describe_left(4)


def test_evaluations_left_follows_the_evaluation_interval():
  meter = progress.Progress(
      total_steps=50, steps_per_epoch=10, eval_every_epochs=2, enabled=False
  )
  # Epochs 2 and 4 and the last (5) are evaluated, then valid + test.
  assert meter.evaluations_left(0) == 3 + 2
  assert meter.evaluations_left(20) == 2 + 2
  assert meter.epochs() == 5
  assert [meter.epoch_of(s) for s in (0, 9, 10, 49)] == [1, 1, 2, 5]


def test_duration_format():
  assert progress.duration(75) == "1m15s"
  assert progress.duration(3 * 3600 + 120) == "3h02m"
