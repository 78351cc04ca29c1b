"""Offline pairwise preference losses: DPO and its family.

Notation (all per example, shape [B]): pi_c, pi_r are policy sequence log-probs of the chosen and
rejected responses, ref_c, ref_r the reference ones; u_c = pi_c - ref_c, u_r = pi_r - ref_r are the
log-ratios; h = u_c - u_r; s = sigmoid; a bar means per-token mean (sum / token count).

Every loss returns `(loss_B, metrics)`. Metrics hold the implicit rewards `rewards/chosen`
(beta * u_c), `rewards/rejected`, `rewards/margin` and `rewards/accuracy` (margin > 0), plus the
policy `logps/chosen` and `logps/rejected`; losses with extra terms add them (`nll`, ...).
Reference-free losses report beta times their own log-probability terms as rewards.

The primitives take what they need; `alignax.losses.get_preference_loss(name)` wraps each one so
a trainer calls every member with the same `PreferenceLogps`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from alignax.losses.checks import check_hyperparameters
from alignax.losses.spec import register
from alignax.numerics import as_float


class PreferenceLogps(NamedTuple):
    """Everything a pairwise loss may read, computed once by the trainer (all [B]).

    policy_*/ref_* are *summed* log-probs over the scored response tokens
    (`alignax.logprobs.sequence_logps(...)["sum"]`); *_lengths are the token counts
    (`...["count"]`). Reference-free losses ignore ref_* (zeros are fine there). The optional
    fields are filled by the trainer only for the losses that declare them (`LossSpec.inputs`).
    """

    policy_chosen: jax.Array
    policy_rejected: jax.Array
    ref_chosen: jax.Array
    ref_rejected: jax.Array
    chosen_lengths: jax.Array
    rejected_lengths: jax.Array
    # "public" (LD-DPO): sums over the first min(n_c, n_r) scored tokens of each response.
    policy_chosen_public: jax.Array | None = None
    policy_rejected_public: jax.Array | None = None
    ref_chosen_public: jax.Array | None = None
    ref_rejected_public: jax.Array | None = None
    # "wpo" (WPO): per-token means of log p(y_t) - log sum_v p(v)^2 under the policy.
    chosen_wpo_logps: jax.Array | None = None
    rejected_wpo_logps: jax.Array | None = None


def _log_ratios(pc, pr, rc, rr):
    return as_float(pc) - as_float(rc), as_float(pr) - as_float(rr)


def _token_mean(logps_B, lengths_B) -> jax.Array:
    return as_float(logps_B) / jnp.maximum(as_float(lengths_B), 1.0)


def chosen_nll(
    policy_chosen_logps: jax.Array, chosen_lengths: jax.Array, nll_reduction: str = "sequence"
) -> jax.Array:
    """Per-example NLL of the chosen responses, [B], in one of two conventions.

        "sequence": NLL_b = -pi_c[b] / max(n_c[b], 1)             (mean per response, then
                    the batch mean: every response weighs the same; alignax's default)
        "token":    NLL_b = -B pi_c[b] / max(sum_b' n_c[b'], 1)   (so that the batch mean is
                    -sum pi_c / sum n_c: one mean over all chosen tokens of the batch, TRL's
                    cross-entropy convention in RPO / CPO / ORPO)

    "token" is a batch statistic: under gradient accumulation it is taken per micro-batch (as in
    TRL), and entries are meaningful only through their mean.
    """
    check_hyperparameters("chosen_nll", nll_reduction=nll_reduction)
    if nll_reduction == "sequence":
        return -_token_mean(policy_chosen_logps, chosen_lengths)
    pc = as_float(policy_chosen_logps)
    total = jnp.maximum(jnp.sum(as_float(chosen_lengths)), 1.0)
    return -pc * pc.shape[0] / total


def _smoothed_logistic(x, label_smoothing) -> jax.Array:
    """-(1 - eps) log s(x) - eps log s(-x): logistic loss with the label flipped w.p. eps."""
    return -(1.0 - label_smoothing) * jax.nn.log_sigmoid(x) - label_smoothing * jax.nn.log_sigmoid(
        -x
    )


def _metrics(chosen_rewards, rejected_rewards, pc, pr, **extra) -> dict[str, jax.Array]:
    margin = chosen_rewards - rejected_rewards
    return {
        "rewards/chosen": chosen_rewards,
        "rewards/rejected": rejected_rewards,
        "rewards/margin": margin,
        "rewards/accuracy": (margin > 0).astype(jnp.float32),
        "logps/chosen": as_float(pc),
        "logps/rejected": as_float(pr),
        **extra,
    }


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = _smoothed_logistic(beta * (u_c - u_r), label_smoothing)
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    x = beta * (u_c - u_r)
    loss = (
        -(1.0 - label_smoothing) * jax.nn.log_sigmoid(x) + label_smoothing * jax.nn.log_sigmoid(-x)
    ) / (1.0 - 2.0 * label_smoothing)
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    u_c, u_r = _token_mean(u_c, chosen_lengths), _token_mean(u_r, rejected_lengths)
    loss = _smoothed_logistic(beta * (u_c - u_r), label_smoothing)
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    policy_margin = jnp.sort(as_float(policy_chosen_logps) - as_float(policy_rejected_logps))
    ref_margin = jnp.sort(as_float(ref_chosen_logps) - as_float(ref_rejected_logps))
    loss = _smoothed_logistic(beta * (policy_margin - ref_margin), label_smoothing)
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = _smoothed_logistic(beta * (jnp.sort(u_c) - jnp.sort(u_r)), label_smoothing)
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    delta = jax.lax.stop_gradient(as_float(reward_shift))
    chosen, rejected = beta * u_c, beta * u_r
    loss = -jax.nn.log_sigmoid(chosen - delta) - jax.nn.log_sigmoid(delta - rejected)
    reward_mean = jnp.mean(jnp.stack([chosen, rejected]))
    return loss, _metrics(
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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    c, r = beta * u_c, beta * u_r
    loss = -jax.nn.log_sigmoid(c) - 0.5 * jax.nn.log_sigmoid(-c) - 0.5 * jax.nn.log_sigmoid(-r)
    return loss, _metrics(c, r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    x = beta * (u_c - u_r)
    loss = jax.nn.sigmoid(x) * (
        jax.nn.log_sigmoid(x) - jnp.log1p(-label_smoothing)
    ) + jax.nn.sigmoid(-x) * (jax.nn.log_sigmoid(-x) - jnp.log(label_smoothing))
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    x = beta * (u_c - u_r)
    # w exp(-x) as exp(log w - x): w underflows to 0 where exp(-x) overflows (0 * inf = NaN).
    loss = jax.nn.sigmoid(-x / tau) * -jax.nn.log_sigmoid(x) + jnp.exp(
        jax.nn.log_sigmoid(x / tau) - x
    )
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = jax.nn.relu(1.0 - beta * (u_c - u_r))
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = jnp.square(u_c - u_r - 1.0 / (2.0 * beta))
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    u_c, u_r = _token_mean(u_c, chosen_lengths), _token_mean(u_r, rejected_lengths)
    loss = jnp.square(u_c - u_r - 1.0 / (2.0 * beta))
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    half = 0.5 / beta
    loss = jnp.square(u_c - half) + jnp.square(u_r + half)
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = (1.0 - jax.nn.sigmoid(beta * u_c)) + jax.nn.sigmoid(beta * u_r)
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = jax.nn.sigmoid(beta * u_c) + (1.0 - jax.nn.sigmoid(beta * (u_c - u_r)))
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


# ----------------------------------------------------------------------------------------------
# Reference-free family: SimPO, CPO, ORPO
# ----------------------------------------------------------------------------------------------


@register("simpo", paper="Meng et al. 2024, SimPO", reference=False, lengths="both")
def simpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    *,
    chosen_lengths: jax.Array,
    rejected_lengths: jax.Array,
    beta: float,
    gamma: float = 0.5,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SimPO: length-normalised, reference-free logistic loss with a target margin gamma.

        x = beta (pibar_c - pibar_r) - gamma,   loss = -(1 - eps) log s(x) - eps log s(-x)

    Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward"
    (eq. 6; gamma is TRL's `simpo_gamma`, in reward units). Rewards reported are beta * pibar.

    Example:
      >>> loss, _ = simpo_loss(jnp.array([-1.0]), jnp.array([-3.0]), chosen_lengths=jnp.array([1]),
      ...                      rejected_lengths=jnp.array([3]), beta=2.0, gamma=0.0)
      >>> float(loss[0])  # pibar_c = pibar_r = -1
      0.6931...
    """
    check_hyperparameters("simpo_loss", beta=beta, label_smoothing=label_smoothing)
    mean_c = _token_mean(policy_chosen_logps, chosen_lengths)
    mean_r = _token_mean(policy_rejected_logps, rejected_lengths)
    loss = _smoothed_logistic(beta * (mean_c - mean_r) - gamma, label_smoothing)
    return loss, _metrics(beta * mean_c, beta * mean_r, policy_chosen_logps, policy_rejected_logps)


@register(
    "cpo",
    paper="Xu et al. 2024, CPO (+ hinge / IPO / SimPO forms)",
    reference=False,
    lengths="both",
)
def cpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    *,
    chosen_lengths: jax.Array,
    rejected_lengths: jax.Array | None = None,
    beta: float,
    alpha: float = 1.0,
    label_smoothing: float = 0.0,
    form: str = "sigmoid",
    gamma: float = 0.5,
    nll_reduction: str = "sequence",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CPO: a reference-free preference term plus behaviour cloning (NLL) on the chosen response.

        loss = pref + alpha * NLL_c,   NLL_c = -pi_c / max(n_c, 1)   (see `chosen_nll`)

    with the preference term `form` (TRL's CPOTrainer loss_type):
        "sigmoid": -(1 - eps) log s(x) - eps log s(-x),  x = beta (pi_c - pi_r)        (paper)
        "hinge":   max(0, 1 - beta (pi_c - pi_r))
        "ipo":     (pibar_c - pibar_r - 1 / (2 beta))^2          (per-token means, as TRL)
        "simpo":   -(1 - eps) log s(x) - eps log s(-x),  x = beta (pibar_c - pibar_r) - gamma
                   (CPO-SimPO: SimPO with CPO's NLL term)

    Xu et al. 2024, "Contrastive Preference Optimization: Pushing the Boundaries of LLM
    Performance in Machine Translation" (TRL's CPOTrainer, cpo_alpha); SimPO form: Meng et al.
    2024. Rewards reported are beta times the log-probability terms the form compares.

    Args:
      chosen_lengths, rejected_lengths: [B] token counts (rejected ones needed by "ipo" and
        "simpo").
      beta: > 0. alpha: NLL weight >= 0. label_smoothing: eps ("sigmoid" and "simpo").
      form: one of "sigmoid", "hinge", "ipo", "simpo".
      gamma: SimPO target margin (reward units), read by "simpo" only.
      nll_reduction: "sequence" (default: per-response mean, then batch mean) or "token"
        (TRL: one mean over all chosen tokens of the batch).

    Example:
      >>> loss, _ = cpo_loss(jnp.array([-2.0]), jnp.array([-2.0]), chosen_lengths=jnp.array([2]),
      ...                    beta=0.1)
      >>> float(loss[0])  # log 2 + 1
      1.6931...
    """
    check_hyperparameters(
        "cpo_loss",
        beta=beta,
        alpha=alpha,
        label_smoothing=label_smoothing,
        form=form,
        gamma=gamma,
        nll_reduction=nll_reduction,
    )
    if form in ("ipo", "simpo"):
        if rejected_lengths is None:
            raise ValueError(f"cpo_loss: form={form!r} needs rejected_lengths")
        chosen = _token_mean(policy_chosen_logps, chosen_lengths)
        rejected = _token_mean(policy_rejected_logps, rejected_lengths)
    else:
        chosen, rejected = as_float(policy_chosen_logps), as_float(policy_rejected_logps)
    diff = chosen - rejected
    if form == "sigmoid":
        pref = _smoothed_logistic(beta * diff, label_smoothing)
    elif form == "hinge":
        pref = jax.nn.relu(1.0 - beta * diff)
    elif form == "ipo":
        pref = jnp.square(diff - 1.0 / (2.0 * beta))
    else:
        pref = _smoothed_logistic(beta * diff - gamma, label_smoothing)
    nll = chosen_nll(policy_chosen_logps, chosen_lengths, nll_reduction)
    metrics = _metrics(beta * chosen, beta * rejected, policy_chosen_logps, policy_rejected_logps)
    return pref + alpha * nll, {**metrics, "nll": nll}


@register("orpo", paper="Hong et al. 2024, ORPO", reference=False, lengths="both")
def orpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    *,
    chosen_lengths: jax.Array,
    rejected_lengths: jax.Array,
    beta: float,
    nll_reduction: str = "sequence",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ORPO: NLL on chosen minus beta times the log-sigmoid of the log odds ratio.

        odds(y) = p / (1 - p) with log p = pibar (per-token mean log-prob)
        log OR  = (pibar_c - log(1 - exp(pibar_c))) - (pibar_r - log(1 - exp(pibar_r)))
        loss    = NLL_c - beta * log s(log OR)

    Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference Model"
    (eq. 6-7; their lambda is our beta, as in TRL). Rewards reported are beta * pibar.

    Args:
      nll_reduction: the NLL_c convention (see `chosen_nll`): "sequence" (default, -pibar_c
        per example) or "token" (TRL: one mean over all chosen tokens of the batch). The odds
        ratio always uses per-response means, in both conventions (as in the paper and TRL).

    Example:
      >>> lp = jnp.log(jnp.array([0.5]))
      >>> loss, m = orpo_loss(lp, lp, chosen_lengths=jnp.ones(1), rejected_lengths=jnp.ones(1),
      ...                     beta=1.0)
      >>> float(loss[0])  # log 2 (NLL) + log 2 (log OR = 0)
      1.3862...
    """
    check_hyperparameters("orpo_loss", beta=beta, nll_reduction=nll_reduction)
    mean_c = _token_mean(policy_chosen_logps, chosen_lengths)
    mean_r = _token_mean(policy_rejected_logps, rejected_lengths)

    def log_odds(mean_logp):
        # log(1 - p) = log(-expm1(log p)); log p is capped just below 0 so p = 1 stays finite.
        mean_logp = jnp.minimum(mean_logp, -1e-6)
        return mean_logp - jnp.log(-jnp.expm1(mean_logp))

    log_odds_ratio = log_odds(mean_c) - log_odds(mean_r)
    nll = chosen_nll(policy_chosen_logps, chosen_lengths, nll_reduction)
    loss = nll - beta * jax.nn.log_sigmoid(log_odds_ratio)
    return loss, _metrics(
        beta * mean_c,
        beta * mean_r,
        policy_chosen_logps,
        policy_rejected_logps,
        nll=nll,
        log_odds_ratio=log_odds_ratio,
    )


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
    u_c, u_r = _log_ratios(
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
    return loss, _metrics(
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
    mean_c = _token_mean(policy_chosen_logps, chosen_lengths)
    mean_r = _token_mean(policy_rejected_logps, rejected_lengths)
    if isinstance(reward_alpha, (int, float)) and reward_alpha == 0:
        chosen, rejected = beta * mean_c, beta * mean_r
    else:
        a = reward_alpha
        chosen = beta * (1.0 - _capped_exp(-a * mean_c)) / a
        rejected = beta * (1.0 - _capped_exp(-a * mean_r)) / a
    loss = _smoothed_logistic(chosen - rejected - gamma, label_smoothing)
    return loss, _metrics(chosen, rejected, policy_chosen_logps, policy_rejected_logps)


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
    return nll, _metrics(zeros, zeros, policy_chosen_logps, policy_rejected_logps, nll=nll)


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
