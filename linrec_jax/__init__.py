"""linrec_jax: LinRec and its baselines for sequential recommendation in JAX.

The functional API:
  attention   pure attention functions (softmax, linrec, linear, efficient,
              linrec_seqnorm) over `[batch, length, heads, head_dim]`
  models      Flax linen SASRec and BERT4Rec (`init` / `apply`)
  losses, metrics, negatives   pure functions
  data        prepared arrays, leave-one-out splits, fixed-shape batches
  train       `train_and_evaluate(config, data_dir, workdir)`
"""

from linrec_jax import losses
from linrec_jax import metrics
from linrec_jax import models
from linrec_jax import negatives
from linrec_jax.layers import attention
from linrec_jax.models import BERT4Rec
from linrec_jax.models import SASRec

__all__ = ["attention", "losses", "metrics", "models", "negatives", "SASRec",
           "BERT4Rec"]
