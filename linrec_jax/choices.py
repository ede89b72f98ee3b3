"""The names `--model` and `--attention` accept, importable without JAX.

Command lines are checked against these before JAX starts (a typo fails in
a fraction of a second); `tests/configs_test.py` keeps them equal to
`linrec_jax.models.MODELS`, `linrec_jax.layers.attention.VARIANTS` (with its
CAUSAL_VARIANTS and WEIGHT_DROPOUT_VARIANTS) and
`linrec_jax.layers.encoder.ACTIVATIONS`.
"""

MODELS = ("sasrec", "bert4rec")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "swish")
ATTENTION_VARIANTS = (
    "softmax",
    "linrec",
    "linear",
    "efficient",
    "linrec_seqnorm",
    "linrec_mean",
    "linrec_decay",
    "softmax_decay",
    "linrec_learned_decay",
    "softmax_learned_decay",
)
# The variants with a causal (unidirectional) form.
CAUSAL_ATTENTION_VARIANTS = frozenset(
    {
        "softmax",
        "linrec",
        "linear",
        "linrec_mean",
        "linrec_decay",
        "softmax_decay",
        "efficient",
        "linrec_learned_decay",
        "softmax_learned_decay",
    }
)
# The variants that form a weight matrix, so accept `--attention_dropout`.
WEIGHT_DROPOUT_ATTENTION_VARIANTS = frozenset(
    {"softmax", "softmax_decay", "softmax_learned_decay"}
)
