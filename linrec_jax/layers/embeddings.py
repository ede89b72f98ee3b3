"""Item and position embeddings shared by the sequential models.

Initialisation follows RecBole (and so the official LinRec code): every
embedding and dense kernel is drawn from N(0, 0.02), biases start at zero.

Positions are the absolute array index 0..L-1 of each token, as in RecBole.
With right padding (real items first, ``PAD_ID`` after them) a real token's
position does not depend on how much padding follows it; with left padding
the real tokens' positions shift with the amount of padding, so the same
history padded to two lengths gives different states. Both layouts work;
the data pipeline decides which one is used and must use it consistently in
training and evaluation.
"""

import flax.linen as nn
import jax.numpy as jnp

from linrec_jax.constants import PAD_ID
from linrec_jax.layers.config import EncoderConfig
from linrec_jax.layers.dropout import Dropout

INIT_STD = 0.02
# N(0, 0.02) for embeddings and dense kernels, as RecBole's `_init_weights`.
normal_init = nn.initializers.normal(stddev=INIT_STD)


class NextPositions(nn.Module):
  """Decode mode's positions: each row's number of real items fed so far.

  The 'cache' variable `length` int32 `[B]` counts them; the next item takes
  position `min(length, max_len - 1)` (clamped past the table's end) and
  counts only if it is real.

  Attributes:
    config: the model's `EncoderConfig` (``max_len``: rows of the position
      table).
  """

  config: EncoderConfig

  @nn.compact
  def __call__(self, inputs):
    """Maps ids ``[B, 1]`` to their positions ``[B, 1]`` and counts them."""
    length = self.variable(
        'cache', 'length', jnp.zeros, inputs.shape[:1], jnp.int32
    )
    positions = jnp.minimum(length.value, self.config.max_len - 1)
    positions = positions[:, None]
    length.value = length.value + (inputs[:, 0] != PAD_ID).astype(jnp.int32)
    return positions


class SequenceEmbedding(nn.Module):
  """Item embedding + learned position embedding -> LayerNorm -> dropout.

  The padding item contributes nothing: its embedding is zeroed at lookup
  (RecBole declares ``padding_idx=0``), so a padded position carries only its
  position embedding. Row ``PAD_ID`` still exists in the table so that tied
  output scores have one column per id.

  Attributes:
    vocab_size: rows of the item table (ids ``0..vocab_size-1``).
    config: the model's `EncoderConfig`: ``max_len`` rows of the position
      table (the longest accepted sequence), embedding size ``hidden`` = D,
      ``dropout`` after the LayerNorm, ``ln_eps``.
  """

  vocab_size: int
  config: EncoderConfig

  def setup(self):
    config = self.config
    self.items = nn.Embed(
        self.vocab_size, config.hidden, embedding_init=normal_init
    )
    self.positions = self.param(
        'positions', normal_init, (config.max_len, config.hidden)
    )
    self.norm = nn.LayerNorm(epsilon=config.ln_eps)
    self.drop = Dropout(rate=config.dropout)
    self.next_positions = NextPositions(config)

  def __call__(self, inputs, deterministic=True, decode=False):
    """Embeds a batch of id sequences.

    Args:
      inputs: int32 ``[B, L]`` item ids, ``PAD_ID`` at padded positions.
      deterministic: if False, applies dropout (needs a 'dropout' rng).
      decode: ``L = 1``, each row's next item, at the position that
        `NextPositions` counts in the 'cache' collection.

    Returns:
      float ``[B, L, D]`` input states.

    Raises:
      ValueError: if ``L > max_len``.
    """
    length = inputs.shape[-1]
    if length > self.config.max_len:
      raise ValueError(
          f'sequence length {length} exceeds max_len {self.config.max_len}'
      )
    real = (inputs != PAD_ID)[..., None]
    x = jnp.where(real, self.items(inputs), 0.0)
    if decode:
      # jnp: restored parameters may be NumPy arrays.
      x = x + jnp.take(self.positions, self.next_positions(inputs), axis=0)
    else:
      x = x + self.positions[:length]
    return self.drop(self.norm(x), deterministic=deterministic)

  def table(self):
    """Returns the item embedding table ``[vocab_size, D]``."""
    return self.items.embedding
