"""GRPO-style group policy-gradient loss: clipped surrogate with separate lower / upper clip,
k3 KL to the reference, and the GRPO / DAPO / Dr. GRPO token aggregations.

Advantages come from `alignax.advantages.group_advantages` (or `rloo_advantages`,
`remax_advantages`): one per sequence, broadcast over its tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.advantages import token_kl
from alignax.losses.checks import check_hyperparameters
from alignax.losses.ppo import _mean_over_tokens, aggregate_tokens, clipped_surrogate
from alignax.numerics import masked


def grpo_loss(
    logps_BxT: jax.Array,
    old_logps_BxT: jax.Array | None,
    ref_logps_BxT: jax.Array | None,
    advantages_B: jax.Array,
    mask_BxT: jax.Array,
    *,
    beta: float = 0.04,
    clip_eps_low: float = 0.2,
    clip_eps_high: float | None = None,
    aggregation: str = "sequence_mean",
    max_length: int | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GRPO loss (Shao et al. 2024, "DeepSeekMath", eq. 3) and its DAPO / Dr. GRPO variants.

        rho_t = exp(logp_t - old_logp_t)
        l_t   = -min(rho_t A, clip(rho_t, 1 - e_low, 1 + e_high) A) + beta * k3_t
        k3_t  = exp(ref_t - logp_t) - (ref_t - logp_t) - 1
        loss  = aggregate_tokens(l, mask, mode=aggregation)

    aggregation: "sequence_mean" (GRPO), "token_mean" (DAPO, Yu et al. 2025; use with
    clip_eps_high = 0.28, "clip-higher"), "max_length" (Dr. GRPO, Liu et al. 2025, with
    `max_length` = generation limit and unscaled advantages).

    Args:
      logps_BxT: current policy log-probs of the sampled tokens.
      old_logps_BxT: sampling-policy log-probs; None means a single update per rollout
        (rho = 1 in value, gradient of logp).
      ref_logps_BxT: reference log-probs; may be None when beta = 0.
      advantages_B: [B] per-sequence advantages (or [B, T] per-token).
      mask_BxT: 1 on scored response tokens.
      beta: KL coefficient >= 0.
      clip_eps_low, clip_eps_high: clip range (clip_eps_high defaults to clip_eps_low).

    Returns:
      (loss [B], metrics) with per-example `kl` (token-mean k3), `policy/clip_fraction`,
      `policy/clip_low_fraction`, `policy/clip_high_fraction`.

    Example:
      >>> loss, m = grpo_loss(jnp.zeros((1, 2)), None, jnp.zeros((1, 2)), jnp.array([1.0]),
      ...                     jnp.ones((1, 2)))
      >>> float(loss[0])
      -1.0
    """
    clip_eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high
    check_hyperparameters(
        "grpo_loss", kl_coef=beta, clip_eps_low=clip_eps_low, clip_eps_high=clip_eps_high
    )
    if old_logps_BxT is None:
        old_logps_BxT = logps_BxT
    old_logps_BxT = jax.lax.stop_gradient(old_logps_BxT)
    advantages = jax.lax.stop_gradient(jnp.asarray(advantages_B, jnp.float32))
    if advantages.ndim == 1:
        advantages = jnp.broadcast_to(advantages[:, None], jnp.shape(mask_BxT))
    loss_BxT, tokens = clipped_surrogate(
        logps_BxT,
        old_logps_BxT,
        advantages,
        mask_BxT,
        clip_eps_low=clip_eps_low,
        clip_eps_high=clip_eps_high,
    )
    metrics = {
        "policy/clip_fraction": _mean_over_tokens(tokens["clipped"], mask_BxT),
        "policy/clip_low_fraction": _mean_over_tokens(tokens["clipped_low"], mask_BxT),
        "policy/clip_high_fraction": _mean_over_tokens(tokens["clipped_high"], mask_BxT),
    }
    if ref_logps_BxT is not None:
        ref = jax.lax.stop_gradient(masked(ref_logps_BxT, mask_BxT))
        kl_BxT = masked(token_kl(masked(logps_BxT, mask_BxT), ref, estimator="k3"), mask_BxT)
        loss_BxT = loss_BxT + beta * kl_BxT
        metrics["kl"] = _mean_over_tokens(kl_BxT, mask_BxT)
    elif isinstance(beta, (int, float)) and beta != 0:
        raise ValueError("grpo_loss: ref_logps_BxT is None but beta != 0")
    loss = aggregate_tokens(loss_BxT, mask_BxT, mode=aggregation, max_length=max_length)
    return loss, metrics
