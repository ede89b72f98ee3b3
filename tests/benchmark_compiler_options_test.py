"""Tests of the compiler-options benchmark's cells and batches."""

import numpy as np
import pytest

from experiments import benchmark_compiler_options as bench
from linrec_jax.constants import PAD_ID


def test_every_default_cell_parses():
  cells = [bench.parse_cell(text) for text in bench.DEFAULT_CELLS]
  assert cells[0] == dict(
      attention="linrec",
      causal=False,
      hidden=128,
      heads=8,
      length=200,
      batch=256,
      objective="prefix",
  )
  assert {c["objective"] for c in cells} == {"prefix", "all"}


@pytest.mark.parametrize(
    "text", ["linrec,causal,64,2,200,32", "linrec,sideways,64,2,200,32,all"]
)
def test_a_bad_cell_names_the_flag(text):
  with pytest.raises(ValueError, match=f"^--options_cell: '{text}'"):
    bench.parse_cell(text)


def test_prefix_batches_score_each_rows_last_real_item():
  cell = bench.parse_cell("linrec,causal,64,2,7,16,prefix")
  batch = bench.make_batch(cell)
  lengths = (batch["inputs"] != PAD_ID).sum(axis=1)
  assert batch["inputs"].shape == (16, 7)
  # Right padding: real items first, then only PAD_ID.
  for row, n in zip(batch["inputs"], lengths):
    assert (row[:n] != PAD_ID).all() and (row[n:] == PAD_ID).all()
  np.testing.assert_array_equal(batch["positions"][:, 0], lengths - 1)
  assert batch["targets"].shape == (16, 1)
  assert (batch["targets"] != PAD_ID).all()


def test_all_position_batches_have_a_target_at_every_real_item():
  cell = bench.parse_cell("softmax,causal,64,2,7,16,all")
  batch = bench.make_batch(cell)
  real = batch["inputs"] != PAD_ID
  np.testing.assert_array_equal(batch["targets"] != PAD_ID, real)
  np.testing.assert_array_equal(batch["positions"][3], np.arange(7))
