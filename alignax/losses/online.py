"""Losses of the online pairwise algorithms, each on the responses its iteration samples and
judges (alignax.rl.xpo, alignax.rl.nash_md): XPO and Nash-MD."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.losses.dpo import dpo_loss


def xpo_loss(
    policy_chosen_B: jax.Array,
    policy_rejected_B: jax.Array,
    ref_chosen_B: jax.Array,
    ref_rejected_B: jax.Array,
    policy_of_ref_sample_B: jax.Array,
    preferred_B: jax.Array,
    *,
    beta: float,
    alpha: float,
) -> tuple[jax.Array, dict]:
    """Per-pair XPO loss [B] from sequence log-probs (Xie et al. 2024, "Exploratory Preference
    Optimization"): DPO's sigmoid loss on the judged pair where `preferred_B` (1: the pair has
    a preference, 0: a tie, no DPO term) plus `alpha * policy_of_ref_sample_B` (the policy's
    log-prob of the reference's response). The iteration is `alignax.rl.xpo`."""
    dpo_B, dpo_metrics = dpo_loss(
        policy_chosen_B, policy_rejected_B, ref_chosen_B, ref_rejected_B, beta=beta
    )
    dpo_B = dpo_B * preferred_B
    loss_B = dpo_B + alpha * policy_of_ref_sample_B
    return loss_B, {
        "xpo/dpo_loss": dpo_B,
        "xpo/exploration": policy_of_ref_sample_B,
        "rewards/margin": dpo_metrics["rewards/margin"],
    }


def nash_md_loss(
    logps_BxT: jax.Array,
    ref_logps_BxT: jax.Array,
    mask_BxT: jax.Array,
    preference_B: jax.Array,
    *,
    beta: float,
) -> tuple[jax.Array, dict]:
    """Per-sequence Nash-MD loss [B] of the policy's responses: `logps_BxT` (differentiated),
    `ref_logps_BxT`, `mask_BxT` (response tokens) and `preference_B` = P(y > y'), the judge's
    probability that the policy's response beats the mixture's (Munos et al. 2024, "Nash
    Learning from Human Feedback"). The iteration is `alignax.rl.nash_md`."""
    sequence_logp_B = jnp.sum(logps_BxT * mask_BxT, -1)
    log_ratio_BxT = jax.lax.stop_gradient(logps_BxT - ref_logps_BxT) * mask_BxT
    kl_term_B = jnp.sum(log_ratio_BxT * logps_BxT, -1)
    score_B = (preference_B - 0.5) * sequence_logp_B
    return beta * kl_term_B - score_B, {
        "nash_md/score": score_B,
        "nash_md/kl": jnp.sum(log_ratio_BxT, -1),
    }
