"""linrec_jax: LinRec and its baselines for sequential recommendation in JAX.

The functional API:
  attention   pure attention functions (softmax, linrec, linear, efficient,
              linrec_seqnorm, ...) over `[batch, length, heads, head_dim]`
  models      Flax linen SASRec and BERT4Rec (`init` / `apply`), each built
              from one frozen `EncoderConfig`
  losses, metrics, negatives   pure functions
  data        prepared arrays, leave-one-out splits, fixed-shape batches
  train       `train_and_evaluate(config, data_dir, workdir)`
              (`linrec_jax.training.train`)
  streaming   O(1)-per-item updates of causal LinRec SASRec
              (`linrec_jax.serving.streaming`)
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
    "data": "linrec_jax.data",
    "train": "linrec_jax.training.train",
    "streaming": "linrec_jax.serving.streaming",
}
# Modules that moved into the layer folders: `linrec_jax.<old>` (attribute
# access and `from linrec_jax import <old>`) still finds them; README
# "What moved" lists the new paths.
_MOVED = {
    name: f"linrec_jax.{path}"
    for name, path in {
        "config": "training.config",
        "optimizer": "training.optimizer",
        "steps": "training.steps",
        "sharding": "training.sharding",
        "checkpointing": "training.checkpointing",
        "evaluation": "training.evaluation",
        "reporting": "training.reporting",
        "progress": "training.progress",
        "run_summary": "training.run_summary",
        "run_binding": "training.run_binding",
        "workdir_lock": "training.workdir_lock",
        "memory_budget": "training.memory_budget",
        "restore": "serving.restore",
        "ranking": "serving.ranking",
        "run_comparison": "analysis.run_comparison",
        "inspection": "analysis.inspection",
        "learning_curve": "analysis.learning_curve",
        "config_help": "cli.config_help",
        "prepared_data": "data.prepared",
    }.items()
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
    "data",
    "train",
    "streaming",
    "run",
]


def __getattr__(name: str):
  if name in _LAZY or name in _MOVED:
    return importlib.import_module({**_MOVED, **_LAZY}[name])
  if name in _LAZY_ATTRIBUTES:
    module, attribute = _LAZY_ATTRIBUTES[name]
    return getattr(importlib.import_module(module), attribute)
  raise AttributeError(f"module 'linrec_jax' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(__all__))
