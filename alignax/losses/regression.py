"""Regression, hinge and anchored pairwise preference losses: SLiC-HF hinge, IPO (and its
length-normalised form), SPPO-hard, APO-zero and APO-down.

Notation, inputs and metrics: alignax.losses.pairwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.losses.checks import check_hyperparameters
from alignax.losses.pairwise import (
    log_ratios,
    pair_metrics,
    token_mean,
)
from alignax.losses.spec import register

# ----------------------------------------------------------------------------------------------
# Regression / hinge / anchored family
# ----------------------------------------------------------------------------------------------


@register("hinge", paper="Zhao et al. 2023, SLiC-HF")
def hinge_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Hinge loss on the normalised likelihood margin (SLiC-HF with a reference).

        loss = max(0, 1 - beta h)

    Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback"; the margin
    is 1 / beta in log-ratio units (Liu et al. 2023, "Statistical Rejection Sampling ...").

    Example:
      >>> z = jnp.zeros(1)
      >>> loss, _ = hinge_loss(jnp.array([2.0]), z, z, z, beta=0.25)
      >>> float(loss[0])  # 1 - 0.25 * 2
      0.5
    """
    check_hyperparameters("hinge_loss", beta=beta)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = jax.nn.relu(1.0 - beta * (u_c - u_r))
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


@register("ipo", paper="Azar et al. 2023, IPO (eq. 17), summed log-probs")
def ipo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """IPO: squared regression of the log-ratio margin to 1 / (2 beta).

        loss = (h - 1 / (2 beta))^2

    Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
    Preferences" (eq. 17, beta there is our beta; tau = beta), on the log-probs as given: the
    trainer passes sequence sums. TRL's IPO averages over tokens first: that is
    `length_normalized_ipo_loss` (registry name "ipo_length_normalized").

    Example:
      >>> loss, _ = ipo_loss(jnp.array([5.0]), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=0.1)
      >>> float(loss[0])  # h = 1 / (2 beta): the minimum
      0.0
    """
    check_hyperparameters("ipo_loss", beta=beta)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = jnp.square(u_c - u_r - 1.0 / (2.0 * beta))
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


@register(
    "ipo_length_normalized",
    paper="Azar et al. 2023, IPO on per-token means (TRL's ipo)",
    lengths="both",
)
def length_normalized_ipo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    chosen_lengths: jax.Array,
    rejected_lengths: jax.Array,
    beta: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """IPO on per-token (length-averaged) log-ratios: TRL's `loss_type="ipo"`.

        loss = (ubar_c - ubar_r - 1 / (2 beta))^2,   ubar = (pi - ref) / max(n, 1)

    The IPO paper (Azar et al. 2023, eq. 17; `ipo_loss`) regresses the summed log-ratio margin;
    TRL averages the log-probs over each response's tokens first. Same target 1 / (2 beta), so
    beta means something different in the two: with n tokens per response the summed form's
    optimum margin is n times smaller per token.

    Example:
      >>> loss, _ = length_normalized_ipo_loss(jnp.array([10.0]), jnp.zeros(1), jnp.zeros(1),
      ...     jnp.zeros(1), chosen_lengths=jnp.array([2]), rejected_lengths=jnp.array([3]),
      ...     beta=0.1)
      >>> float(loss[0])  # ubar_c - ubar_r = 5 = 1 / (2 beta): the minimum
      0.0
    """
    check_hyperparameters("length_normalized_ipo_loss", beta=beta)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    u_c, u_r = token_mean(u_c, chosen_lengths), token_mean(u_r, rejected_lengths)
    loss = jnp.square(u_c - u_r - 1.0 / (2.0 * beta))
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


@register("sppo_hard", paper="Wu et al. 2024, SPPO (hard labels)")
def sppo_hard_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SPPO with hard labels: regress the log-ratios to +-1 / (2 beta).

        loss = (u_c - 1 / (2 beta))^2 + (u_r + 1 / (2 beta))^2

    Wu et al. 2024, "Self-Play Preference Optimization for Language Model Alignment" (winner
    probability 1 for chosen, 0 for rejected; TRL's loss_type="sppo_hard").

    Example:
      >>> loss, _ = sppo_hard_loss(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=0.5)
      >>> float(loss[0])  # 1 + 1
      2.0
    """
    check_hyperparameters("sppo_hard_loss", beta=beta)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    half = 0.5 / beta
    loss = jnp.square(u_c - half) + jnp.square(u_r + half)
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


@register("apo_zero", paper="D'Oosterlinck et al. 2024, APO-zero")
def apo_zero_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """APO-zero: push chosen likelihood up and rejected down, each anchored at the reference.

        loss = (1 - s(beta u_c)) + s(beta u_r)

    D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions"
    (eq. 7): for when chosen outputs are better than the model's own.

    Example:
      >>> loss, _ = apo_zero_loss(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=0.1)
      >>> float(loss[0])
      1.0
    """
    check_hyperparameters("apo_zero_loss", beta=beta)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = (1.0 - jax.nn.sigmoid(beta * u_c)) + jax.nn.sigmoid(beta * u_r)
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


@register("apo_down", paper="D'Oosterlinck et al. 2024, APO-down")
def apo_down_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """APO-down: push chosen likelihood down, rejected further down (relative to chosen).

        loss = s(beta u_c) + (1 - s(beta (u_c - u_r)))

    D'Oosterlinck et al. 2024 (eq. 8): for when the model is better than the chosen outputs.

    Example:
      >>> loss, _ = apo_down_loss(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=0.1)
      >>> float(loss[0])
      1.0
    """
    check_hyperparameters("apo_down_loss", beta=beta)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = jax.nn.sigmoid(beta * u_c) + (1.0 - jax.nn.sigmoid(beta * (u_c - u_r)))
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)
