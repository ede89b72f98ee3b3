"""XLA compiler options of the jitted training step.

On CPU, XLA hands some fusions to the YNNPACK library by default: matrix
products, but also elementwise chains and reductions, for which it first
materialises every broadcast operand at full size. Keeping only the matrix
products in the library (`CPU_LIBRARY_DOTS_ONLY`) changes what the step
costs, in opposite directions for the two objectives
(`experiments/benchmark_compiler_options.py`: forward with dropout,
backward and Adam, both executables compiled and timed alternately in one
process on the 2-core CPU; docs/RESULTS.md):

- one scored position per row (prefix samples, `train_mode="prefix"`, the
  `official` preset): 1.26x faster at hidden 128, N = 200, batch 256
  (non-causal LinRec), 1.37x at N = 1000, batch 32, 1.21x at N = 2000,
  batch 8, 1.23x for a causal hidden-64 step at batch 64, 1.01x for causal
  softmax at hidden 128;
- every position scored (`train_mode="all"`, the `cpu` preset): 0.96x
  (causal LinRec) and 0.87x (softmax) at hidden 64, batch 32, so those
  steps keep XLA's default.

Losses agree to float32 rounding (the library sums in another order).
"""

CPU_LIBRARY_DOTS_ONLY = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"
}


def train_step_options(train_mode: str, platform: str) -> dict[str, str]:
  """`jax.jit(..., compiler_options=...)` for a training step.

  Args:
    train_mode: the run's `TrainConfig.train_mode` ("all", "prefix" or
      "cloze").
    platform: the devices' platform (`jax.default_backend()`).

  Returns:
    `CPU_LIBRARY_DOTS_ONLY` for prefix training on CPU, else `{}`.
  """
  if platform == "cpu" and train_mode == "prefix":
    return dict(CPU_LIBRARY_DOTS_ONLY)
  return {}
