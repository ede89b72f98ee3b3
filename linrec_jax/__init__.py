"""linrec_jax: LinRec and its baselines for sequential recommendation in JAX.

The functional API:
  attention   pure attention functions (softmax, linrec, linear, efficient,
              linrec_seqnorm, ...) over `[batch, length, heads, head_dim]`
  models      Flax linen SASRec and BERT4Rec (`init` / `apply`), each built
              from one frozen `EncoderConfig`
  losses, metrics, negatives   pure functions
  data        prepared arrays, leave-one-out splits, fixed-shape batches
  train       `train_and_evaluate(config, data_dir, workdir)`
  configs     the presets, as ml_collections config files
  run         `run(dataset=..., model=..., attention=..., preset=...,
              workdir=...)`: one call from a name to test metrics

Submodules load on first use, so that `import linrec_jax` (and the command
line's flag checks) do not start JAX.
"""

import importlib

_LAZY = {
    "attention": "linrec_jax.layers.attention",
    "losses": "linrec_jax.losses",
    "metrics": "linrec_jax.metrics",
    "models": "linrec_jax.models",
    "negatives": "linrec_jax.negatives",
    "configs": "linrec_jax.configs",
}
_LAZY_ATTRIBUTES = {
    "SASRec": ("linrec_jax.models", "SASRec"),
    "BERT4Rec": ("linrec_jax.models", "BERT4Rec"),
    "EncoderConfig": ("linrec_jax.layers.config", "EncoderConfig"),
    "run": ("linrec_jax.cli.quickstart", "run"),
}

__all__ = [
    "attention",
    "losses",
    "metrics",
    "models",
    "negatives",
    "SASRec",
    "BERT4Rec",
    "EncoderConfig",
    "configs",
    "run",
]


def __getattr__(name: str):
  if name in _LAZY:
    return importlib.import_module(_LAZY[name])
  if name in _LAZY_ATTRIBUTES:
    module, attribute = _LAZY_ATTRIBUTES[name]
    return getattr(importlib.import_module(module), attribute)
  raise AttributeError(f"module 'linrec_jax' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(__all__))
