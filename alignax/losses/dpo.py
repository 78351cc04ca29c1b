"""The logistic (Bradley-Terry) family of pairwise preference losses: DPO and its relatives.

Notation, inputs and metrics: alignax.losses.pairwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.losses.checks import check_hyperparameters
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
# Logistic (Bradley-Terry) family
# ----------------------------------------------------------------------------------------------


@register("dpo", paper="Rafailov et al. 2023, DPO (eq. 7); cDPO: Mitchell 2023")
def dpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Sigmoid DPO, and conservative DPO (cDPO) when label_smoothing > 0.

        loss = -(1 - eps) log s(beta h) - eps log s(-beta h),   h = u_c - u_r

    Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a
    Reward Model" (eq. 7); cDPO: Mitchell 2023, "A note on DPO with noisy preferences".

    Args:
      policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps: [B]
        sequence log-probs.
      beta: KL strength (> 0).
      label_smoothing: eps, the assumed probability that a label is flipped, in [0, 0.5).

    Returns:
      (loss [B], metrics).

    Example:
      >>> loss, _ = dpo_loss(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=0.1)
      >>> float(loss[0])  # log 2 at equal log-probs
      0.6931...
    """
    check_hyperparameters("dpo_loss", beta=beta, label_smoothing=label_smoothing)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = smoothed_logistic(beta * (u_c - u_r), label_smoothing)
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


@register("robust_dpo", paper="Chowdhury et al. 2024, Provably Robust DPO")
def robust_dpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Robust DPO: an unbiased estimate of the clean DPO loss under label-flip rate eps.

        loss = [-(1 - eps) log s(beta h) + eps log s(-beta h)] / (1 - 2 eps)

    Chowdhury et al. 2024, "Provably Robust DPO: Aligning Language Models with Noisy Feedback".

    Args:
      beta: > 0. label_smoothing: eps in [0, 0.5) (eps = 0 gives DPO).

    Example:
      >>> loss, _ = robust_dpo_loss(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1),
      ...                           beta=0.1, label_smoothing=0.1)
      >>> float(loss[0])  # (0.9 - 0.1) log 2 / 0.8 = log 2
      0.6931...
    """
    check_hyperparameters("robust_dpo_loss", beta=beta, label_smoothing=label_smoothing)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    x = beta * (u_c - u_r)
    loss = (
        -(1.0 - label_smoothing) * jax.nn.log_sigmoid(x) + label_smoothing * jax.nn.log_sigmoid(-x)
    ) / (1.0 - 2.0 * label_smoothing)
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


@register("dpo_length_normalized", paper="Park et al. 2024, length-normalised DPO", lengths="both")
def length_normalized_dpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    chosen_lengths: jax.Array,
    rejected_lengths: jax.Array,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DPO on per-token (length-normalised) log-ratios, which removes DPO's length bias.

        loss = -(1 - eps) log s(beta (ubar_c - ubar_r)) - eps log s(-beta (...)),
        ubar = (pi - ref) / max(n, 1)

    Park et al. 2024, "Disentangling Length from Quality in Direct Preference Optimization";
    the normalisation used by SimPO (Meng et al. 2024) applied to DPO.

    Args:
      chosen_lengths, rejected_lengths: [B] token counts of the responses.

    Example:
      >>> loss, m = length_normalized_dpo_loss(jnp.array([-2.0]), jnp.array([-4.0]), jnp.zeros(1),
      ...     jnp.zeros(1), chosen_lengths=jnp.array([2]), rejected_lengths=jnp.array([4]), beta=1.)
      >>> float(loss[0])  # ubar_c = ubar_r = -1
      0.6931...
    """
    check_hyperparameters("length_normalized_dpo_loss", beta=beta, label_smoothing=label_smoothing)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    u_c, u_r = token_mean(u_c, chosen_lengths), token_mean(u_r, rejected_lengths)
    loss = smoothed_logistic(beta * (u_c - u_r), label_smoothing)
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


@register("rpo", paper="Pang et al. 2024, RPO (DPO + NLL)", lengths="chosen")
def rpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    chosen_lengths: jax.Array,
    beta: float,
    alpha: float = 1.0,
    label_smoothing: float = 0.0,
    nll_reduction: str = "sequence",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """RPO: DPO plus a negative log-likelihood term on the chosen response.

        loss = dpo_loss + alpha * NLL_c,   NLL_c = -pi_c / max(n_c, 1)   (per-token NLL)

    Pang et al. 2024, "Iterative Reasoning Preference Optimization"; Liu et al. 2024,
    "Provably Mitigating Overoptimization in RLHF" (RPO). TRL's `rpo_alpha`.

    Args:
      chosen_lengths: [B] token counts of the chosen responses.
      alpha: weight of the NLL term (>= 0).
      nll_reduction: "sequence" (default: each response's per-token NLL, then the batch mean)
        or "token" (TRL: one mean over all chosen tokens of the batch); see `chosen_nll`.

    Example:
      >>> loss, m = rpo_loss(jnp.array([-2.0]), jnp.array([-2.0]), jnp.array([-2.0]),
      ...     jnp.array([-2.0]), chosen_lengths=jnp.array([2]), beta=0.1, alpha=1.0)
      >>> float(loss[0])  # log 2 + 2 / 2
      1.6931...
    """
    check_hyperparameters(
        "rpo_loss",
        beta=beta,
        alpha=alpha,
        label_smoothing=label_smoothing,
        nll_reduction=nll_reduction,
    )
    loss, metrics = dpo_loss(
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        beta=beta,
        label_smoothing=label_smoothing,
    )
    nll = chosen_nll(policy_chosen_logps, chosen_lengths, nll_reduction)
    return loss + alpha * nll, {**metrics, "nll": nll}


@register("dpo_reference_free", paper="Rafailov et al. 2023, uniform reference", reference=False)
def reference_free_dpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DPO with a uniform reference (ref log-probs = 0).

        loss = -(1 - eps) log s(beta (pi_c - pi_r)) - eps log s(-beta (pi_c - pi_r))

    Rafailov et al. 2023 (TRL's `reference_free=True`).

    Example:
      >>> loss, _ = reference_free_dpo_loss(jnp.array([-1.0]), jnp.array([-1.0]), beta=0.1)
      >>> float(loss[0])
      0.6931...
    """
    zeros = jnp.zeros_like(as_float(policy_chosen_logps))
    return dpo_loss(
        policy_chosen_logps,
        policy_rejected_logps,
        zeros,
        zeros,
        beta=beta,
        label_smoothing=label_smoothing,
    )


@register("aot", paper="Melnyk et al. 2024, AOT (paired)")
def aot_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """AOT (paired): distributional alignment via optimal transport over the batch.

        d = sort_B(pi_c - pi_r) - sort_B(ref_c - ref_r)
        loss_i = -(1 - eps) log s(beta d_i) - eps log s(-beta d_i)

    Melnyk et al. 2024, "Distributional Preference Alignment of LLMs via Optimal Transport"
    (TRL's loss_type="aot"). Entry i of the loss belongs to the i-th smallest quantile, not to
    example i: the loss is a function of the whole batch, and only its mean is meaningful.

    Example:
      >>> loss, _ = aot_loss(jnp.array([1.0, 0.0]), jnp.zeros(2), jnp.zeros(2), jnp.zeros(2),
      ...                    beta=1.0)
      >>> [round(float(x), 4) for x in loss]  # d = sort([1, 0]) - [0, 0] = [0, 1]
      [0.6931, 0.3133]
    """
    check_hyperparameters("aot_loss", beta=beta, label_smoothing=label_smoothing)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    policy_margin = jnp.sort(as_float(policy_chosen_logps) - as_float(policy_rejected_logps))
    ref_margin = jnp.sort(as_float(ref_chosen_logps) - as_float(ref_rejected_logps))
    loss = smoothed_logistic(beta * (policy_margin - ref_margin), label_smoothing)
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


@register("aot_unpaired", paper="Melnyk et al. 2024, AOT (unpaired)")
def aot_unpaired_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """AOT (unpaired): first-order stochastic dominance of chosen over rejected log-ratios.

        d = sort_B(u_c) - sort_B(u_r);  loss_i = -(1 - eps) log s(beta d_i) - eps log s(-beta d_i)

    Melnyk et al. 2024 (TRL's loss_type="aot_pair"). Like `aot_loss`, entries are quantiles.

    Example:
      >>> loss, _ = aot_unpaired_loss(jnp.array([1.0, 0.0]), jnp.array([1.0, 0.0]), jnp.zeros(2),
      ...                             jnp.zeros(2), beta=1.0)
      >>> [round(float(x), 4) for x in loss]
      [0.6931, 0.6931]
    """
    check_hyperparameters("aot_unpaired_loss", beta=beta, label_smoothing=label_smoothing)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = smoothed_logistic(beta * (jnp.sort(u_c) - jnp.sort(u_r)), label_smoothing)
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


@register("bco_pair", paper="Jung et al. 2024, BCO (pairwise)", aux="reward_shift")
def bco_pair_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
    reward_shift: float | jax.Array = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """BCO (pairwise): binary classification of chosen vs rejected with a reward shift delta.

        loss = -log s(beta u_c - delta) - log s(-(beta u_r - delta))

    Jung et al. 2024, "Binary Classifier Optimization for Large Language Model Alignment".
    delta is a running mean of the implicit rewards kept by the trainer; it is an input here and
    the metric `rewards/mean` (mean of beta u_c and beta u_r over the batch) is what to fold into
    it (e.g. an EMA or running average in the train state).

    Args:
      reward_shift: delta (scalar or [B]); treated as a constant (no gradient flows to it).

    Example:
      >>> loss, _ = bco_pair_loss(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=0.1)
      >>> float(loss[0])  # 2 log 2
      1.3862...
    """
    check_hyperparameters("bco_pair_loss", beta=beta)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    delta = jax.lax.stop_gradient(as_float(reward_shift))
    chosen, rejected = beta * u_c, beta * u_r
    loss = -jax.nn.log_sigmoid(chosen - delta) - jax.nn.log_sigmoid(delta - rejected)
    reward_mean = jnp.mean(jnp.stack([chosen, rejected]))
    return loss, pair_metrics(
        chosen,
        rejected,
        policy_chosen_logps,
        policy_rejected_logps,
        **{"rewards/mean": reward_mean},
    )


@register("nca", paper="Chen et al. 2024, NCA")
def nca_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """NCA (pairwise): noise-contrastive alignment on absolute implicit rewards.

        loss = -log s(beta u_c) - 1/2 log s(-beta u_c) - 1/2 log s(-beta u_r)

    Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards".

    Example:
      >>> loss, _ = nca_loss(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=0.1)
      >>> float(loss[0])  # 2 log 2
      1.3862...
    """
    check_hyperparameters("nca_loss", beta=beta)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    c, r = beta * u_c, beta * u_r
    loss = -jax.nn.log_sigmoid(c) - 0.5 * jax.nn.log_sigmoid(-c) - 0.5 * jax.nn.log_sigmoid(-r)
    return loss, pair_metrics(c, r, policy_chosen_logps, policy_rejected_logps)


@register("exo", paper="Ji et al. 2024, EXO")
def exo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
    label_smoothing: float = 1e-3,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """EXO (pairwise): reverse KL between the policy's and the smoothed label's pair distributions.

        loss = s(beta h) [log s(beta h) - log(1 - eps)] + s(-beta h) [log s(-beta h) - log eps]

    = KL(Bernoulli(s(beta h)) || Bernoulli(1 - eps)). Ji et al. 2024, "Towards Efficient Exact
    Optimization of Language Model Alignment" (K = 2). eps must be in (0, 0.5) (TRL uses 1e-3).

    Example:
      >>> loss, _ = exo_loss(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=0.1,
      ...                    label_smoothing=0.25)
      >>> float(loss[0])  # 0.5 (log 0.5 - log 0.75) + 0.5 (log 0.5 - log 0.25)
      0.1438...
    """
    check_hyperparameters("exo_loss", beta=beta, label_smoothing=label_smoothing)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    x = beta * (u_c - u_r)
    loss = jax.nn.sigmoid(x) * (
        jax.nn.log_sigmoid(x) - jnp.log1p(-label_smoothing)
    ) + jax.nn.sigmoid(-x) * (jax.nn.log_sigmoid(-x) - jnp.log(label_smoothing))
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


@register("discopop", paper="Chris Lu et al. 2024, DiscoPOP")
def discopop_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    ref_chosen_logps: jax.Array,
    ref_rejected_logps: jax.Array,
    *,
    beta: float,
    tau: float = 0.05,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DiscoPOP / log-ratio modulated loss: a sigmoid blend of logistic and exponential losses.

        x = beta h,  w = s(x / tau),  loss = (1 - w) * (-log s(x)) + w * exp(-x)

    Chris Lu et al. 2024, "Discovering Preference Optimization Algorithms with and for Large
    Language Models".

    Args:
      tau: temperature of the modulation (> 0; 0.05 in the paper).

    Example:
      >>> loss, _ = discopop_loss(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=0.1)
      >>> float(loss[0])  # 0.5 log 2 + 0.5
      0.8465...
    """
    check_hyperparameters("discopop_loss", beta=beta, tau=tau)
    u_c, u_r = log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    x = beta * (u_c - u_r)
    # w exp(-x) as exp(log w - x): w underflows to 0 where exp(-x) overflows (0 * inf = NaN).
    loss = jax.nn.sigmoid(-x / tau) * -jax.nn.log_sigmoid(x) + jnp.exp(
        jax.nn.log_sigmoid(x / tau) - x
    )
    return loss, pair_metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)
