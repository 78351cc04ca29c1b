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

from typing import NamedTuple

import jax
import jax.numpy as jnp

from alignax.losses.registry import check_hyperparameters
from alignax.numerics import as_float


class PreferenceLogps(NamedTuple):
    """Everything a pairwise loss may read, computed once by the trainer (all [B]).

    policy_*/ref_* are *summed* log-probs over the scored response tokens
    (`alignax.logprobs.sequence_logps(...)["sum"]`); *_lengths are the token counts
    (`...["count"]`). Reference-free losses ignore ref_* (zeros are fine there).
    """

    policy_chosen: jax.Array
    policy_rejected: jax.Array
    ref_chosen: jax.Array
    ref_rejected: jax.Array
    chosen_lengths: jax.Array
    rejected_lengths: jax.Array


def _log_ratios(pc, pr, rc, rr):
    return as_float(pc) - as_float(rc), as_float(pr) - as_float(rr)


def _token_mean(logps_B, lengths_B) -> jax.Array:
    return as_float(logps_B) / jnp.maximum(as_float(lengths_B), 1.0)


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
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """RPO: DPO plus a negative log-likelihood term on the chosen response.

        loss = dpo_loss + alpha * NLL_c,   NLL_c = -pi_c / max(n_c, 1)   (per-token NLL)

    Pang et al. 2024, "Iterative Reasoning Preference Optimization"; Liu et al. 2024,
    "Provably Mitigating Overoptimization in RLHF" (RPO). TRL's `rpo_alpha`.

    Args:
      chosen_lengths: [B] token counts of the chosen responses.
      alpha: weight of the NLL term (>= 0).

    Example:
      >>> loss, m = rpo_loss(jnp.array([-2.0]), jnp.array([-2.0]), jnp.array([-2.0]),
      ...     jnp.array([-2.0]), chosen_lengths=jnp.array([2]), beta=0.1, alpha=1.0)
      >>> float(loss[0])  # log 2 + 2 / 2
      1.6931...
    """
    check_hyperparameters("rpo_loss", beta=beta, alpha=alpha, label_smoothing=label_smoothing)
    loss, metrics = dpo_loss(
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        beta=beta,
        label_smoothing=label_smoothing,
    )
    nll = -_token_mean(policy_chosen_logps, chosen_lengths)
    return loss + alpha * nll, {**metrics, "nll": nll}


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
      >>> loss.round(4).tolist()  # d = sort([1, 0]) - [0, 0] = [0, 1]
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
      >>> loss.round(4).tolist()
      [0.6931, 0.6931]
    """
    check_hyperparameters("aot_unpaired_loss", beta=beta, label_smoothing=label_smoothing)
    u_c, u_r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    loss = _smoothed_logistic(beta * (jnp.sort(u_c) - jnp.sort(u_r)), label_smoothing)
    return loss, _metrics(beta * u_c, beta * u_r, policy_chosen_logps, policy_rejected_logps)


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
    Preferences" (eq. 17, beta there is our beta; tau = beta). Uses the log-probs as given: TRL
    feeds per-token means; pass sum / count for that (or use `PreferenceLogps` with lengths 1).

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


def cpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    *,
    chosen_lengths: jax.Array,
    beta: float,
    alpha: float = 1.0,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CPO: reference-free DPO plus behaviour cloning (NLL) on the chosen response.

        loss = -(1 - eps) log s(beta (pi_c - pi_r)) - eps log s(...) + alpha * NLL_c,
        NLL_c = -pi_c / max(n_c, 1)

    Xu et al. 2024, "Contrastive Preference Optimization: Pushing the Boundaries of LLM
    Performance in Machine Translation" (TRL's CPOTrainer, cpo_alpha).

    Example:
      >>> loss, _ = cpo_loss(jnp.array([-2.0]), jnp.array([-2.0]), chosen_lengths=jnp.array([2]),
      ...                    beta=0.1)
      >>> float(loss[0])  # log 2 + 1
      1.6931...
    """
    check_hyperparameters("cpo_loss", beta=beta, alpha=alpha, label_smoothing=label_smoothing)
    loss, metrics = reference_free_dpo_loss(
        policy_chosen_logps, policy_rejected_logps, beta=beta, label_smoothing=label_smoothing
    )
    nll = -_token_mean(policy_chosen_logps, chosen_lengths)
    return loss + alpha * nll, {**metrics, "nll": nll}


def orpo_loss(
    policy_chosen_logps: jax.Array,
    policy_rejected_logps: jax.Array,
    *,
    chosen_lengths: jax.Array,
    rejected_lengths: jax.Array,
    beta: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ORPO: NLL on chosen minus beta times the log-sigmoid of the log odds ratio.

        odds(y) = p / (1 - p) with log p = pibar (per-token mean log-prob)
        log OR  = (pibar_c - log(1 - exp(pibar_c))) - (pibar_r - log(1 - exp(pibar_r)))
        loss    = -pibar_c - beta * log s(log OR)

    Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference Model"
    (eq. 6-7; their lambda is our beta, as in TRL). Rewards reported are beta * pibar.

    Example:
      >>> lp = jnp.log(jnp.array([0.5]))
      >>> loss, m = orpo_loss(lp, lp, chosen_lengths=jnp.ones(1), rejected_lengths=jnp.ones(1),
      ...                     beta=1.0)
      >>> float(loss[0])  # log 2 (NLL) + log 2 (log OR = 0)
      1.3862...
    """
    check_hyperparameters("orpo_loss", beta=beta)
    mean_c = _token_mean(policy_chosen_logps, chosen_lengths)
    mean_r = _token_mean(policy_rejected_logps, rejected_lengths)

    def log_odds(mean_logp):
        # log(1 - p) = log(-expm1(log p)); log p is capped just below 0 so p = 1 stays finite.
        mean_logp = jnp.minimum(mean_logp, -1e-6)
        return mean_logp - jnp.log(-jnp.expm1(mean_logp))

    log_odds_ratio = log_odds(mean_c) - log_odds(mean_r)
    nll = -mean_c
    loss = nll - beta * jax.nn.log_sigmoid(log_odds_ratio)
    return loss, _metrics(
        beta * mean_c,
        beta * mean_r,
        policy_chosen_logps,
        policy_rejected_logps,
        nll=nll,
        log_odds_ratio=log_odds_ratio,
    )
