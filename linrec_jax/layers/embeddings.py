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

INIT_STD = 0.02
# N(0, 0.02) for embeddings and dense kernels, as RecBole's `_init_weights`.
normal_init = nn.initializers.normal(stddev=INIT_STD)


class SequenceEmbedding(nn.Module):
  """Item embedding + learned position embedding -> LayerNorm -> dropout.

  The padding item contributes nothing: its embedding is zeroed at lookup
  (RecBole declares ``padding_idx=0``), so a padded position carries only its
  position embedding. Row ``PAD_ID`` still exists in the table so that tied
  output scores have one column per id.

  Attributes:
    vocab_size: rows of the item table (ids ``0..vocab_size-1``).
    max_len: rows of the position table; longest accepted sequence.
    hidden: embedding size D.
    dropout: dropout rate after the LayerNorm.
    ln_eps: LayerNorm epsilon.
  """

  vocab_size: int
  max_len: int
  hidden: int
  dropout: float = 0.0
  ln_eps: float = 1e-12

  def setup(self):
    self.items = nn.Embed(
        self.vocab_size, self.hidden, embedding_init=normal_init
    )
    self.positions = self.param(
        'positions', normal_init, (self.max_len, self.hidden)
    )
    self.norm = nn.LayerNorm(epsilon=self.ln_eps)
    self.drop = nn.Dropout(rate=self.dropout)

  def __call__(self, inputs, deterministic=True):
    """Embeds a batch of id sequences.

    Args:
      inputs: int32 ``[B, L]`` item ids, ``PAD_ID`` at padded positions.
      deterministic: if False, applies dropout (needs a 'dropout' rng).

    Returns:
      float ``[B, L, D]`` input states.

    Raises:
      ValueError: if ``L > max_len``.
    """
    length = inputs.shape[-1]
    if length > self.max_len:
      raise ValueError(
          f'sequence length {length} exceeds max_len {self.max_len}'
      )
    real = (inputs != PAD_ID)[..., None]
    x = jnp.where(real, self.items(inputs), 0.0)
    x = x + self.positions[:length]
    return self.drop(self.norm(x), deterministic=deterministic)

  def table(self):
    """Returns the item embedding table ``[vocab_size, D]``."""
    return self.items.embedding
