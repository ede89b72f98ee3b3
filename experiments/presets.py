"""The presets, now ml_collections config files in `linrec_jax.configs`.

Kept so old imports work: `PRESETS` maps a name to the preset's own values,
`DATASETS` a dataset name to its raw files.
"""

from linrec_jax import configs
from linrec_jax.configs import cpu
from linrec_jax.configs import official
from linrec_jax.configs import tiny

DATASETS = configs.DATASETS
CPU, OFFICIAL, TINY = cpu.VALUES, official.VALUES, tiny.VALUES
PRESETS = {"cpu": CPU, "official": OFFICIAL, "tiny": TINY}


def preset_values(
    preset: str, dataset: str, model: str, attention: str
) -> dict:
  """The preset's values for this dataset, model and attention."""
  return configs.get_config(
      preset, dataset=dataset, model=model, attention=attention
  ).to_dict()
