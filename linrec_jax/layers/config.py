"""`EncoderConfig`: the one description of a model's encoder, validated once.

The attention block, the encoder and both models take this frozen dataclass
(as flax `examples/lm1b/models.py: TransformerConfig` does), so a model
hyperparameter is declared here and nowhere else; `TrainConfig` extends it
with the fields of a training run. A bad value fails at construction with a
`ConfigError` naming the field as its flag (`--heads: ...`).

Nothing here imports JAX: the command line checks its flags before JAX
starts. The names accepted come from `linrec_jax.choices` (a test keeps them
equal to the layers' own tables).
"""

import dataclasses
import math

from linrec_jax import choices

# No size, count or seed needs more: larger values are typing errors, and
# they would overflow the int32 arrays and the shapes built from them.
MAX_INT = 2**31 - 1


class ConfigError(ValueError):
  """A configuration value is invalid; the message names the flag at fault."""


def require(condition: bool, field: str, message: str) -> None:
  """Raises `ConfigError("--field: message")` unless `condition` holds."""
  if not condition:
    raise ConfigError(f"--{field}: {message}")


def check_numbers(config) -> None:
  """Every float field finite and every int field within `MAX_INT`."""
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if isinstance(value, float):
      require(
          math.isfinite(value),
          field.name,
          f"must be a finite number, got {value}",
      )
    elif isinstance(value, int) and not isinstance(value, bool):
      require(
          abs(value) <= MAX_INT,
          field.name,
          f"{value} is out of range (at most {MAX_INT})",
      )


def require_positive(config, *fields: str) -> None:
  for field in fields:
    value = getattr(config, field)
    require(value > 0, field, f"must be positive, got {value}")


def require_rate(config, field: str) -> None:
  value = getattr(config, field)
  require(0.0 <= value < 1.0, field, f"must lie in [0, 1), got {value}")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Sizes and choices of the embedding and Transformer stack.

  Defaults are the official LinRec values (LINREC_NOTES §3): hidden 128, 2
  layers, 8 heads, FFN 256, dropout 0.2, exact GELU, LayerNorm eps 1e-12,
  post-LN, N = 200; causal, as SASRec's next-item model.

  Attributes:
    max_len: N, the longest accepted sequence (rows of the position table).
    hidden: model size D.
    layers: number of Transformer blocks.
    heads: attention heads H; they must divide `hidden` (head size D // H).
    ffn: inner size of each block's feed-forward network.
    attention: a key of `attention.VARIANTS`.
    causal: position t attends to positions <= t only.
    mask_padding: keep padded positions out of attention (False: the
      official LinRec code, which applies no mask at all).
    dropout: rate on the embeddings and after each sublayer.
    attention_dropout: rate on the attention weights (RecBole's
      `attn_dropout_prob`; only variants that form weights).
    activation: feed-forward activation, a key of `encoder.ACTIVATIONS`.
    ln_eps: LayerNorm epsilon.
    pre_ln: normalise before each sublayer (plus a final LayerNorm)
      instead of after each residual.
  """

  max_len: int = 200
  hidden: int = 128
  layers: int = 2
  heads: int = 8
  ffn: int = 256
  attention: str = "linrec"
  causal: bool = True
  mask_padding: bool = True
  dropout: float = 0.2
  attention_dropout: float = 0.0
  activation: str = "gelu"
  ln_eps: float = 1e-12
  pre_ln: bool = False

  def __post_init__(self):
    check_numbers(self)
    require_positive(self, "max_len", "hidden", "layers", "heads", "ffn")
    require(self.ln_eps > 0, "ln_eps", f"must be positive, got {self.ln_eps}")
    require(
        self.hidden % self.heads == 0,
        "heads",
        f"hidden ({self.hidden}) must be divisible by heads ({self.heads})",
    )
    require(
        self.attention in choices.ATTENTION_VARIANTS,
        "attention",
        f"unknown attention {self.attention!r}; valid names: "
        f"{', '.join(choices.ATTENTION_VARIANTS)}",
    )
    require(
        not self.causal or self.attention in choices.CAUSAL_ATTENTION_VARIANTS,
        "causal",
        f"attention {self.attention!r} does not support causal=True; causal "
        f"variants: {', '.join(sorted(choices.CAUSAL_ATTENTION_VARIANTS))} "
        "(or --nocausal)",
    )
    require(
        self.activation in choices.ACTIVATIONS,
        "activation",
        f"unknown activation {self.activation!r}; valid names: "
        f"{', '.join(choices.ACTIVATIONS)}",
    )
    require_rate(self, "dropout")
    require_rate(self, "attention_dropout")
    weights = choices.WEIGHT_DROPOUT_ATTENTION_VARIANTS
    require(
        not self.attention_dropout or self.attention in weights,
        "attention_dropout",
        f"attention {self.attention!r} forms no attention weights to drop; "
        f"use one of {', '.join(sorted(weights))} or 0",
    )

  @property
  def head_dim(self) -> int:
    """K = D // H."""
    return self.hidden // self.heads


def encoder_config(config) -> EncoderConfig:
  """The `EncoderConfig` part of `config` (e.g. a `TrainConfig`)."""
  fields = dataclasses.fields(EncoderConfig)
  return EncoderConfig(**{f.name: getattr(config, f.name) for f in fields})
