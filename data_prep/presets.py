"""Per-dataset preparation presets (LinRec paper / official code settings).

A preset fixes the filtering used to prepare a dataset and notes the training
settings that go with it (max_len, batch size), which the training job reads
from meta.json. Any option can be overridden; datasets without a preset get
`DEFAULT` (no filtering).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preset:
  """Preparation options plus the training settings noted for a dataset.

  Attributes:
    name: the dataset name.
    description: what the preset reproduces.
    min_rating: keep interactions rated at least this (None keeps all).
    k_core: iterative k-core on users and items (0 disables it).
    dedup_consecutive: drop an item equal to the user's previous item.
    max_len: the sequence length N used in training (noted, not applied).
    batch_size: the training batch size (noted, not applied).
  """

  name: str
  description: str
  min_rating: float | None = None
  k_core: int = 0
  dedup_consecutive: bool = False
  max_len: int | None = None
  batch_size: int | None = None

  def options(self) -> dict:
    """The preparation options of this preset."""
    return {
        "min_rating": self.min_rating,
        "k_core": self.k_core,
        "dedup_consecutive": self.dedup_consecutive,
    }

  def describe(self) -> str:
    """A printable summary."""
    return (
        f"preset {self.name}: {self.description}\n"
        f"  min_rating={self.min_rating} k_core={self.k_core} "
        f"dedup_consecutive={self.dedup_consecutive} | training: "
        f"max_len={self.max_len} batch_size={self.batch_size}"
    )


PRESETS = {
    "ml-1m": Preset(
        name="ml-1m",
        description=(
            "MovieLens-1M as SASRec's ml-1m.txt (6,040 users, 3,416 items): "
            "no extra filtering. From the raw ratings.dat/ml-1m.zip, pass "
            "k_core=5 to get the SASRec item set."
        ),
        max_len=200,
        batch_size=2048,
    ),
    "gowalla": Preset(
        name="gowalla",
        description="Gowalla check-ins, 5-core (LinRec paper)",
        k_core=5,
        max_len=100,
        batch_size=512,
    ),
}

DEFAULT = Preset(name="default", description="no preset: no filtering")


def get(dataset: str) -> Preset:
  """The preset of a dataset name, or DEFAULT."""
  return PRESETS.get(dataset, DEFAULT)
