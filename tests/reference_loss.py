"""An independent reference for the training steps' gradient.

Written out in full (no `linrec_jax.losses`, no `steps`), so the tests that
compare a launcher's update with it catch a wrong reduction over devices,
such as a factor of N or 1/N in the gradient.
"""

import jax
import jax.numpy as jnp

from linrec_jax.constants import PAD_ID


def global_mean_loss_grads(model, params, batch):
  """Gradient of the next-item cross-entropy, averaged over all targets.

  Args:
    model: a SASRec (item table at `params["embed"]["items"]["embedding"]`).
    params: its parameters.
    batch: `inputs` and `targets` int32 `[B, L]`; `PAD_ID` targets carry no
      loss.
  """

  def mean_loss(params):
    states = model.apply({"params": params}, batch["inputs"])
    table = params["embed"]["items"]["embedding"]
    logits = jnp.einsum("BLD,VD->BLV", states, table)
    logits = logits.at[..., PAD_ID].set(-jnp.inf)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(
        log_probs, batch["targets"][..., None], axis=-1
    )[..., 0]
    counted = batch["targets"] != PAD_ID
    return -jnp.sum(jnp.where(counted, picked, 0.0)) / jnp.sum(counted)

  return jax.jit(jax.grad(mean_loss))(params)
