"""KTO: Kahneman-Tversky optimisation on unpaired desirable / undesirable examples."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.losses.registry import check_hyperparameters
from alignax.numerics import as_float


def kto_loss(
    policy_logps: jax.Array,
    ref_logps: jax.Array,
    labels: jax.Array,
    policy_kl_logps: jax.Array,
    ref_kl_logps: jax.Array,
    *,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """KTO loss for unpaired feedback (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect
    Theoretic Optimization", eq. 8; as in TRL's KTOTrainer).

        u    = pi(y|x) - ref(y|x)                        (sequence log-ratio)
        z0   = stop_grad(max(mean_B(pi(y'|x) - ref(y'|x)), 0))
        loss = w_D (1 - s(beta (u - z0)))    if label = 1 (desirable)
               w_U (1 - s(beta (z0 - u)))    if label = 0 (undesirable)

    z0, the reference point, estimates KL(pi || ref) from mismatched pairs (x, y') — the
    completion of another example in the batch — so it is a batch statistic: entries of the
    loss depend on the whole batch (under jit on a sharded batch the mean is global).

    Args:
      policy_logps, ref_logps: [B] sequence log-probs of the example's own completion.
      labels: [B] 1 desirable, 0 undesirable (bool or int).
      policy_kl_logps, ref_kl_logps: [B'] sequence log-probs of mismatched (x, y') pairs.
      beta: > 0.
      desirable_weight, undesirable_weight: w_D, w_U >= 0 (the paper suggests
        w_D n_D / (w_U n_U) in [1, 4/3]).

    Returns:
      (loss [B], metrics) with `kl` (z0), `rewards/chosen` (beta u on desirable rows, 0
      elsewhere), `rewards/rejected` (likewise on undesirable rows), `rewards/desirable_fraction`.

    Example:
      >>> loss, m = kto_loss(jnp.zeros(2), jnp.zeros(2), jnp.array([1, 0]), jnp.zeros(2),
      ...                    jnp.zeros(2), beta=0.1)
      >>> loss.tolist()  # 1 - s(0) on both
      [0.5, 0.5]
    """
    check_hyperparameters(
        "kto_loss",
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
    )
    u = as_float(policy_logps) - as_float(ref_logps)
    z0 = jnp.maximum(jnp.mean(as_float(policy_kl_logps) - as_float(ref_kl_logps)), 0.0)
    z0 = jax.lax.stop_gradient(z0)
    desirable = jnp.asarray(labels) > 0
    desirable_loss = desirable_weight * (1.0 - jax.nn.sigmoid(beta * (u - z0)))
    undesirable_loss = undesirable_weight * (1.0 - jax.nn.sigmoid(beta * (z0 - u)))
    loss = jnp.where(desirable, desirable_loss, undesirable_loss)
    rewards = beta * u
    metrics = {
        "kl": z0,
        "rewards/chosen": jnp.where(desirable, rewards, 0.0),
        "rewards/rejected": jnp.where(desirable, 0.0, rewards),
        "rewards/desirable_fraction": jnp.mean(desirable.astype(jnp.float32)),
        "logps/policy": as_float(policy_logps),
    }
    return loss, metrics
