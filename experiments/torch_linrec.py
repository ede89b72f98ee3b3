"""LinRec attention in PyTorch, for RecBole's SASRec in the peer benchmark.

Written from the formula (docs: LINREC_NOTES §1, the authors' "official"
mode), per head with head dimension `d_h`:

    q_hat_i = elu(q_i) / ||elu(q_i)||_2        (each query token)
    k_hat_j = elu(k_j) / ||elu(k_j)||_2        (each key token)
    out     = Q_hat (K_hat^T V) / sqrt(d_h)

No mask of any kind, no softmax, no attention dropout. `NORM_EPS` inside
the square root keeps an all-zero feature vector finite (the formula has
no epsilon; the JAX library uses the same one).

Imports torch: only the peers' virtual environment runs this module.
"""

import math

import torch
from torch import nn
from torch.nn import functional

NORM_EPS = 1e-12


def linrec_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
  """LinRec attention of `[B, H, N, d_h]` queries, keys and values.

  Returns:
    `[B, H, N, d_h]`; costs O(N d_h^2) per head (`K_hat^T V` is d_h x d_h).
  """
  q_hat = functional.elu(q)
  q_hat = q_hat * torch.rsqrt(q_hat.square().sum(-1, keepdim=True) + NORM_EPS)
  k_hat = functional.elu(k)
  k_hat = k_hat * torch.rsqrt(k_hat.square().sum(-1, keepdim=True) + NORM_EPS)
  state = torch.matmul(k_hat.transpose(-2, -1), v)  # [B, H, d_h, d_h]
  return torch.matmul(q_hat, state) / math.sqrt(q.shape[-1])


class LinRecSelfAttention(nn.Module):
  """RecBole's multi-head attention sublayer with LinRec as its core.

  The projections, output dense layer, dropout and post-LN residual are the
  ones of the RecBole `MultiHeadAttention` it replaces (taken over, weights
  included); only the softmax core between them changes.
  """

  def __init__(self, recbole_attention: nn.Module):
    super().__init__()
    self.heads = recbole_attention.num_attention_heads
    self.head_size = recbole_attention.attention_head_size
    self.query = recbole_attention.query
    self.key = recbole_attention.key
    self.value = recbole_attention.value
    self.dense = recbole_attention.dense
    self.out_dropout = recbole_attention.out_dropout
    self.LayerNorm = recbole_attention.LayerNorm  # pylint: disable=invalid-name

  def _heads(self, x: torch.Tensor) -> torch.Tensor:
    """`[B, N, H d_h]` -> `[B, H, N, d_h]`."""
    batch, length, _ = x.shape
    return x.view(batch, length, self.heads, self.head_size).transpose(1, 2)

  def forward(
      self, input_tensor: torch.Tensor, attention_mask: torch.Tensor
  ) -> torch.Tensor:
    """`[B, N, D]` -> `[B, N, D]`; `attention_mask` is ignored (official)."""
    del attention_mask
    context = linrec_attention(
        self._heads(self.query(input_tensor)),
        self._heads(self.key(input_tensor)),
        self._heads(self.value(input_tensor)),
    )
    batch, _, length, _ = context.shape
    context = context.transpose(1, 2).reshape(batch, length, -1)
    hidden = self.out_dropout(self.dense(context))
    return self.LayerNorm(hidden + input_tensor)


def swap_in_linrec(sasrec: nn.Module) -> int:
  """Replaces the attention of every layer of a RecBole SASRec, in place.

  Returns:
    The number of layers changed.
  """
  layers = sasrec.trm_encoder.layer
  for layer in layers:
    layer.multi_head_attention = LinRecSelfAttention(layer.multi_head_attention)
  return len(layers)
