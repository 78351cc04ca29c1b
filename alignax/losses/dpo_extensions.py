"""Pairwise preference losses beyond TRL's defaults: f-divergences (f-DPO), length
desensitisation (LD-DPO), weighting (WPO), reward shapes (AlphaPO), SFT on the chosen responses
and mixtures (MPO).

Notation, inputs and metrics: alignax.losses.pairwise.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from alignax.losses.checks import check_hyperparameters
from alignax.losses.dpo import bco_pair_loss, dpo_loss
from alignax.losses.pairwise import (
    chosen_nll,
    log_ratios,
    pair_metrics,
    smoothed_logistic,
    token_mean,
)
from alignax.losses.spec import register
from alignax.numerics import as_float

# ----------------------------------------------------------------------------------------------
# Beyond TRL's defaults: f-divergences, length desensitisation, weighting, reward shapes, mixtures
# ----------------------------------------------------------------------------------------------


def _capped_exp(x: jax.Array) -> jax.Array:
    """exp(x) with x capped at log(max float) - 2, so that a difference of two capped values stays
    finite (the cap is flat: no gradient beyond it, never inf or NaN)."""
    cap = math.log(float(jnp.finfo(x.dtype).max)) - 2.0
    return jnp.exp(jnp.minimum(x, cap))


F_DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha")


@register("f_dpo", paper="Wang et al. 2024, f-DPO (Beyond Reverse KL)")
def f_dpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
    divergence: str = "reverse_kl",
    divergence_alpha: float = 0.5,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """f-DPO: DPO under an f-divergence constraint instead of the reverse KL.

    The optimal policy of max E[r] - beta D_f(pi || ref) gives the implicit reward
    beta f'(pi / ref), so with u = log(pi / ref):

        loss = -log s(beta [f'(e^u_c) - f'(e^u_r)])

        divergence   f(x)                                  f'(e^u)
        reverse_kl   x log x                               u + 1            (= DPO)
        forward_kl   -log x                                -e^-u
        js           x log x - (x + 1) log((x + 1) / 2)    log 2 + log s(u)
        alpha        (x^(1-a) - (1-a) x - a) / (a (a - 1))  (1 - e^(-a u)) / a,  a in (0, 1)

    Wang et al. 2024, "Beyond Reverse KL: Generalizing Direct Preference Optimization with
    Diverse Divergence Constraints" (ICLR; TRL's `f_divergence_type`). Exponentials are capped
    (as TRL does) so extreme log-ratios give finite values.

    Args:
      divergence: one of `F_DIVERGENCES`.
      divergence_alpha: a of the alpha-divergence, > 0 (read by "alpha" only; a -> 0 recovers
        the reverse KL, a = 1 the forward KL).

    Example:
      >>> z = jnp.zeros(1)
      >>> loss, _ = f_dpo_loss(jnp.array([1.0]), z, z, z, beta=1.0, divergence="forward_kl")
      >>> float(loss[0])  # -log s(-e^-1 + 1)
      0.4262...
    """
    check_hyperparameters(
        "f_dpo_loss", beta=beta, divergence=divergence, divergence_alpha=divergence_alpha
    )
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    if divergence == "reverse_kl":
        chosen, rejected = u_c, u_r
    elif divergence == "forward_kl":
        chosen, rejected = -_capped_exp(-u_c), -_capped_exp(-u_r)
    elif divergence == "js":
        chosen, rejected = jax.nn.log_sigmoid(u_c), jax.nn.log_sigmoid(u_r)
    else:
        a = divergence_alpha
        chosen, rejected = -_capped_exp(-a * u_c) / a, -_capped_exp(-a * u_r) / a
    loss = -jax.nn.log_sigmoid(beta * (chosen - rejected))
    return loss, pair_metrics(
        beta * chosen, beta * rejected, policy_chosen_logps, policy_rejected_logps
    )


@register(
    "ld_dpo",
    paper="Liu et al. 2024, LD-DPO (length desensitisation)",
    inputs=("public",),
)
def ld_dpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    policy_chosen_public: jax.Array,
    policy_rejected_public: jax.Array,
    ref_chosen_public: jax.Array,
    ref_rejected_public: jax.Array,
    beta: float,
    ld_alpha: float = 0.5,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """LD-DPO: DPO with the tokens beyond the shorter response's length down-weighted.

        l_p     = min(n_c, n_r)                          (the "public" length of the pair)
        pihat   = sum_{t <= l_p} log p_t + a * sum_{t > l_p} log p_t
                = a * pi + (1 - a) * pi_public
        loss    = DPO on pihat (policy and reference alike)

    Liu et al. 2024, "LD-DPO: Length Desensitization in Direct Preference Optimization"
    (TRL's `ld_alpha`). a = 1 gives DPO; a < 1 shrinks the excess length's share of the
    log-ratio, removing DPO's pull toward longer responses.

    Args:
      *_public: [B] sums of the log-probs over the first l_p scored tokens of each response
        (`PreferenceLogps` fields, filled by the trainer for losses declaring "public").
      ld_alpha: a in [0, 1].

    Example:
      >>> z = jnp.zeros(1)
      >>> loss, _ = ld_dpo_loss(jnp.array([-3.0]), jnp.array([-1.0]), z, z,
      ...     policy_chosen_public=jnp.array([-1.0]), policy_rejected_public=jnp.array([-1.0]),
      ...     ref_chosen_public=z, ref_rejected_public=z, beta=1.0, ld_alpha=0.0)
      >>> float(loss[0])  # only the public parts count: pihat_c = pihat_r = -1
      0.6931...
    """
    check_hyperparameters(
        "ld_dpo_loss", beta=beta, ld_alpha=ld_alpha, label_smoothing=label_smoothing
    )

    def desensitised(total, public):
        return ld_alpha * as_float(total) + (1.0 - ld_alpha) * as_float(public)

    return dpo_loss(
        desensitised(policy_chosen_logps, policy_chosen_public),
        desensitised(policy_rejected_logps, policy_rejected_public),
        desensitised(ref_chosen_logps, ref_chosen_public),
        desensitised(ref_rejected_logps, ref_rejected_public),
        beta=beta,
        label_smoothing=label_smoothing,
    )


def wpo_weights(
    chosen_wpo_logps: jax.Array, rejected_wpo_logps: jax.Array, *, weighting: str = "clamped"
) -> jax.Array:
    """WPO pair weights, [B], constants (no gradient), from the chosen and rejected responses'
    per-token-normalised log-probabilities under the current policy

        a = (1 / n) sum_t [log p(y_t) - log sum_v p(v)^2]      (Zhou et al. 2024, eq. 6, the
                                                                "sampling-aligned" weight)

    weighting (two published implementations of the pair weight exp(a_c) exp(a_r)):
      "clamped" (default): w = min(exp(a_c + a_r), 1), capped at 1, as TRL's `use_weighting`
        up to 0.28 (checked against 0.27.2's `DPOTrainer.concatenated_forward`).
      "unclamped": w = exp(a_c) exp(a_r), not capped, as TRL's `use_weighting` from 0.29 (the
        DPOTrainer refactor, huggingface/trl#3906) on, 1.x included; a pair the policy finds
        likelier than a typical sample of its own (a > 0) weighs more than 1.

    On-policy pairs get weights near 1, off-policy ones less.
    """
    check_hyperparameters("wpo_weights", weighting=weighting)
    a = as_float(chosen_wpo_logps) + as_float(rejected_wpo_logps)
    if weighting == "clamped":
        a = jnp.minimum(a, 0.0)
    return jax.lax.stop_gradient(jnp.exp(a))


@register("wpo", paper="Zhou et al. 2024, WPO (weighted DPO)", inputs=("wpo",))
def wpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    chosen_wpo_logps: jax.Array,
    rejected_wpo_logps: jax.Array,
    beta: float,
    label_smoothing: float = 0.0,
    weighting: str = "clamped",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """WPO: DPO with each pair weighted by how likely the current policy is to produce it.

        loss = w * dpo_loss,   w = wpo_weights(a_c, a_r, weighting=weighting)  (a constant)

    Zhou et al. 2024, "WPO: Enhancing RLHF with Weighted Preference Optimization" (TRL's
    `use_weighting=True`). Simulates on-policy learning from off-policy preference data.

    Args:
      chosen_wpo_logps, rejected_wpo_logps: [B] per-token means of
        log p(y_t) - logsumexp_v(2 log p(v)) under the policy (`PreferenceLogps` "wpo").
      weighting: "clamped" (w = min(exp(a_c + a_r), 1): TRL <= 0.28, the default) or
        "unclamped" (w = exp(a_c) exp(a_r): TRL >= 0.29 and 1.x); see `wpo_weights`. A config
        picks it with `--config.loss.hyperparameters.weighting=unclamped` (configs/dpo.py:wpo).

    Example:
      >>> z = jnp.zeros(1)
      >>> loss, m = wpo_loss(z, z, z, z, chosen_wpo_logps=jnp.array([-0.5]),
      ...     rejected_wpo_logps=jnp.array([-0.5]), beta=0.1)
      >>> float(loss[0])  # e^-1 log 2
      0.2549...
      >>> loss, m = wpo_loss(z, z, z, z, chosen_wpo_logps=jnp.array([0.5]),
      ...     rejected_wpo_logps=jnp.array([0.25]), beta=0.1, weighting="unclamped")
      >>> float(loss[0])  # e^0.75 log 2 (clamped: 1 * log 2)
      1.46739...
    """
    check_hyperparameters(
        "wpo_loss", beta=beta, label_smoothing=label_smoothing, weighting=weighting
    )
    loss, metrics = dpo_loss(
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        beta=beta,
        label_smoothing=label_smoothing,
    )
    weights = wpo_weights(chosen_wpo_logps, rejected_wpo_logps, weighting=weighting)
    return weights * loss, {**metrics, "wpo/weight": weights}


@register("alphapo", paper="Gupta et al. 2025, AlphaPO", reference=False, lengths="both")
def alphapo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    *,
    chosen_lengths: jax.Array,
    rejected_lengths: jax.Array,
    beta: float,
    gamma: float = 0.5,
    reward_alpha: float = 0.25,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """AlphaPO: SimPO with an alpha-shaped reward.

        r(y)  = (beta / a) (1 - p(y)^(-a / n)) = (beta / a) (1 - exp(-a pibar))
        loss  = -(1 - eps) log s(x) - eps log s(-x),   x = r(y_c) - r(y_r) - gamma

    Gupta et al. 2025, "AlphaPO: Reward Shape Matters for LLM Alignment" (eq. 5; TRL's CPO
    loss_type="alphapo"). a -> 0 recovers SimPO's reward beta * pibar; a > 0 flattens the reward
    for very unlikely responses (less likelihood displacement). The exponential is capped so
    extreme log-probs stay finite.

    Args:
      reward_alpha: a (any real; 0 gives SimPO).
      gamma: target margin in reward units.

    Example:
      >>> loss, _ = alphapo_loss(jnp.array([-2.0]), jnp.array([-4.0]),
      ...     chosen_lengths=jnp.array([2]), rejected_lengths=jnp.array([2]), beta=1.0,
      ...     gamma=0.0, reward_alpha=1.0)
      >>> float(loss[0])  # r_c = 1 - e, r_r = 1 - e^2: -log s(e^2 - e)
      0.0093...
    """
    check_hyperparameters("alphapo_loss", beta=beta, gamma=gamma, label_smoothing=label_smoothing)
    mean_c = token_mean(policy_chosen_logps, chosen_lengths)
    mean_r = token_mean(policy_rejected_logps, rejected_lengths)
    if isinstance(reward_alpha, (int, float)) and reward_alpha == 0:
        chosen, rejected = beta * mean_c, beta * mean_r
    else:
        a = reward_alpha
        chosen = beta * (1.0 - _capped_exp(-a * mean_c)) / a
        rejected = beta * (1.0 - _capped_exp(-a * mean_r)) / a
    loss = smoothed_logistic(chosen - rejected - gamma, label_smoothing)
    return loss, pair_metrics(chosen, rejected, policy_chosen_logps, policy_rejected_logps)


@register("sft", paper="chosen-response NLL (behaviour cloning)", reference=False, lengths="chosen")
def sft_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    *,
    chosen_lengths: jax.Array,
    nll_reduction: str = "sequence",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Supervised NLL of the chosen response (a component of mixtures such as MPO).

        loss = NLL_c   (see `chosen_nll` for the "sequence" / "token" conventions)

    Example:
      >>> loss, _ = sft_loss(jnp.array([-3.0]), jnp.zeros(1), chosen_lengths=jnp.array([2]))
      >>> float(loss[0])
      1.5
    """
    nll = chosen_nll(policy_chosen_logps, chosen_lengths, nll_reduction)
    zeros = jnp.zeros_like(nll)
    return nll, pair_metrics(zeros, zeros, policy_chosen_logps, policy_rejected_logps, nll=nll)


@register(
    "mpo",
    paper="Wang et al. 2024, MPO (DPO + BCO + SFT mixture)",
    lengths="chosen",
    aux="reward_shift",
)
def mpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    chosen_lengths: jax.Array,
    beta: float,
    preference_weight: float = 0.8,
    quality_weight: float = 0.2,
    generation_weight: float = 1.0,
    reward_shift: float | jax.Array = 0.0,
    nll_reduction: str = "sequence",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """MPO: a weighted sum of a preference loss (DPO), a quality loss (BCO) and a generation loss
    (SFT on the chosen response).

        loss = w_p dpo_loss + w_q bco_pair_loss(delta) + w_g NLL_c

    Wang et al. 2024, "Enhancing the Reasoning Ability of Multimodal Large Language Models via
    Mixed Preference Optimization" (weights 0.8 / 0.2 / 1; TRL's loss_type=["sigmoid",
    "bco_pair", "sft"] with loss_weights). delta is BCO's running reward mean, kept by the trainer
    in `TrainState.aux` (declared `aux="reward_shift"`). Any other mixture of registered losses:
    `alignax.losses.registry.weighted_preference_loss`.

    Example:
      >>> z = jnp.zeros(1)
      >>> loss, _ = mpo_loss(z, z, z, z, chosen_lengths=jnp.ones(1), beta=0.1)
      >>> float(loss[0])  # 0.8 log 2 + 0.2 (2 log 2) + 0
      0.8317...
    """
    check_hyperparameters(
        "mpo_loss",
        beta=beta,
        preference_weight=preference_weight,
        quality_weight=quality_weight,
        generation_weight=generation_weight,
        nll_reduction=nll_reduction,
    )
    logps = (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    preference, metrics = dpo_loss(*logps, beta=beta)
    quality, bco_metrics = bco_pair_loss(*logps, beta=beta, reward_shift=reward_shift)
    nll = chosen_nll(policy_chosen_logps, chosen_lengths, nll_reduction)
    loss = preference_weight * preference + quality_weight * quality + generation_weight * nll
    return loss, {
        **metrics,
        "rewards/mean": bco_metrics["rewards/mean"],
        "loss/preference": preference,
        "loss/quality": quality,
        "nll": nll,
    }
