"""Reward-model objectives: Bradley-Terry pairs, K-way rankings (Plackett-Luce and the
InstructGPT pairwise expansion), ensembles, reward normalisation, and process reward models
(per-step scores of multi-step solutions).

Rewards are scalar outputs of a reward head, one per completion. Ranks follow
docs/conventions.md: 0 = best.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.losses.checks import check_hyperparameters, require_label_smoothing
from alignax.numerics import as_float

ENSEMBLE_METHODS = ("mean", "min", "mean_minus_std", "mean_minus_var")
SOLUTION_SCORES = ("min", "product", "last")

# Stands in for -inf in masked log-sum-exps: finite, so gradients stay finite.
_NEG = -1e30


def bradley_terry_loss(
    chosen_rewards: jax.Array,
    rejected_rewards: jax.Array,
    *,
    margin: jax.Array | None = None,
    center_coefficient: float = 0.0,
    label_smoothing: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Pairwise Bradley-Terry reward-model loss with margin, centring and label smoothing.

        d    = r_c - r_r - m
        loss = -(1 - eps) log s(d) - eps log s(-d) + eta (r_c + r_r)^2

    Bradley & Terry 1952; Ouyang et al. 2022 (InstructGPT, eq. 1); per-pair margin m as in
    Touvron et al. 2023 (Llama 2); centring term eta (r_c + r_r)^2 from Eisenstein et al. 2023,
    "Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate Reward Hacking".

    Args:
      chosen_rewards, rejected_rewards: [B] reward-head outputs.
      margin: optional [B] required reward gap m (e.g. from preference strength).
      center_coefficient: eta >= 0.
      label_smoothing: eps in [0, 0.5).

    Returns:
      (loss [B], metrics `rewards/chosen`, `rewards/rejected`, `rewards/margin`,
      `rewards/accuracy`).

    Example:
      >>> loss, _ = bradley_terry_loss(jnp.array([1.0]), jnp.array([1.0]))
      >>> float(loss[0])  # log 2
      0.6931...
    """
    check_hyperparameters("bradley_terry_loss", center_coefficient=center_coefficient)
    require_label_smoothing("bradley_terry_loss", label_smoothing)
    r_c, r_r = as_float(chosen_rewards), as_float(rejected_rewards)
    d = r_c - r_r
    if margin is not None:
        d = d - as_float(margin)
    loss = -(1.0 - label_smoothing) * jax.nn.log_sigmoid(d) - label_smoothing * jax.nn.log_sigmoid(
        -d
    )
    loss = loss + center_coefficient * jnp.square(r_c + r_r)
    metrics = {
        "rewards/chosen": r_c,
        "rewards/rejected": r_r,
        "rewards/margin": r_c - r_r,
        "rewards/accuracy": (r_c > r_r).astype(jnp.float32),
    }
    return loss, metrics


def confidence_bradley_terry_loss(
    first_rewards: jax.Array,
    second_rewards: jax.Array,
    target: jax.Array,
    *,
    confidence_weight: jax.Array | float = 0.0,
    center_coefficient: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Bradley-Terry on soft labels, with Burns et al.'s auxiliary confidence term.

        d      = r_1 - r_2
        hard   = stop_gradient([d > 0])                  the model's own hardened preference
        q      = (1 - alpha) p + alpha hard
        loss   = -q log s(d) - (1 - q) log s(-d) + eta (r_1 + r_2)^2

    Cross-entropy is linear in its target, so this is (1 - alpha) CE(p, s(d)) + alpha CE(hard,
    s(d)): Burns et al. (2023, "Weak-to-strong generalization", eq. 1) with the weak supervisor's
    probability p as the first target, in the pairwise form of a reward model. alpha = 0 is
    plain Bradley-Terry on soft labels (p = 1: the first response preferred; p = 0: the second;
    p = 1 - eps: label smoothing eps); the confidence term lets a strong student keep its own
    confident preferences where they contradict a weak label.

    Args:
      first_rewards, second_rewards: [B] reward-head outputs of the pair's two responses.
      target: [B] P(first preferred) by the supervisor, in [0, 1].
      confidence_weight: alpha in [0, 1], a scalar (e.g. warmed up over training).
      center_coefficient: eta >= 0.

    Returns:
      (loss [B], metrics `rewards/margin` d and `rewards/agreement` [d > 0] == [p > 1/2]).
    """
    check_hyperparameters("confidence_bradley_terry_loss", center_coefficient=center_coefficient)
    r_1, r_2 = as_float(first_rewards), as_float(second_rewards)
    d = r_1 - r_2
    hard = jax.lax.stop_gradient((d > 0).astype(d.dtype))
    q = (1.0 - confidence_weight) * as_float(target) + confidence_weight * hard
    loss = -q * jax.nn.log_sigmoid(d) - (1.0 - q) * jax.nn.log_sigmoid(-d)
    loss = loss + center_coefficient * jnp.square(r_1 + r_2)
    agreement = ((d > 0) == (as_float(target) > 0.5)).astype(jnp.float32)
    return loss, {"rewards/margin": d, "rewards/agreement": agreement}


def _valid(ranks_BxK, mask_BxK):
    if mask_BxK is None:
        return jnp.ones(ranks_BxK.shape, bool)
    return jnp.asarray(mask_BxK) > 0


def plackett_luce_loss(
    rewards_BxK: jax.Array, ranks_BxK: jax.Array, *, mask_BxK: jax.Array | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Listwise Plackett-Luce negative log-likelihood of a full ranking of K completions.

        loss = -sum_{k=1}^{K} [ r_(k) - log sum_{j >= k} exp r_(j) ]

    where r_(k) is the reward of the completion ranked k-th (rank 0 first). Plackett 1975, Luce
    1959; used for reward models by Zhu et al. 2023 ("Principled RLHF from Pairwise or K-wise
    Comparisons"). K = 2 is Bradley-Terry. Tied ranks are ordered by position (a stable sort).

    Args:
      rewards_BxK: rewards of the K completions of each prompt.
      ranks_BxK: int ranks, 0 = best.
      mask_BxK: optional 1 on real completions (ragged K); masked ones are left out entirely.

    Returns:
      (loss [B], metrics `rewards/accuracy`: fraction of ordered pairs the rewards get right).

    Example:
      >>> loss, _ = plackett_luce_loss(jnp.zeros((1, 3)), jnp.array([[0, 1, 2]]))
      >>> float(loss[0])  # log 3 + log 2 + log 1
      1.7917...
    """
    rewards_BxK = as_float(rewards_BxK)
    valid_BxK = _valid(ranks_BxK, mask_BxK)
    K = rewards_BxK.shape[-1]
    # Masked completions sort last and drop out of every normaliser.
    order_BxK = jnp.argsort(
        jnp.where(valid_BxK, ranks_BxK, jnp.iinfo(jnp.int32).max), axis=-1, stable=True
    )
    sorted_r = jnp.take_along_axis(rewards_BxK, order_BxK, axis=-1)
    sorted_valid = jnp.take_along_axis(valid_BxK, order_BxK, axis=-1)
    later_KxK = jnp.arange(K)[None, :] >= jnp.arange(K)[:, None]  # [k, j]: j >= k
    include_BxKxK = later_KxK[None] & sorted_valid[:, None, :]
    logits_BxKxK = jnp.where(include_BxKxK, sorted_r[:, None, :], _NEG)
    normaliser_BxK = jax.nn.logsumexp(logits_BxKxK, axis=-1)
    terms = jnp.where(sorted_valid, sorted_r - normaliser_BxK, 0.0)
    _, pair_metrics = pairwise_ranking_loss(rewards_BxK, ranks_BxK, mask_BxK=mask_BxK)
    return -jnp.sum(terms, axis=-1), {"rewards/accuracy": pair_metrics["rewards/accuracy"]}


def pairwise_ranking_loss(
    rewards_BxK: jax.Array, ranks_BxK: jax.Array, *, mask_BxK: jax.Array | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """InstructGPT's K-choose-2 loss: all ranked pairs of a prompt in one batch element.

        loss = -1 / C(K, 2) * sum_{rank_i < rank_j} log s(r_i - r_j)

    Ouyang et al. 2022, "Training language models to follow instructions with human feedback"
    (eq. 1). With ties or a mask, the average is over the pairs that count (strictly ordered,
    both real), which is 1 / C(K, 2) for a complete strict ranking.

    Args:
      rewards_BxK, ranks_BxK (0 = best), mask_BxK (optional, 1 on real completions).

    Returns:
      (loss [B], metrics `rewards/accuracy` fraction of counted pairs with r_i > r_j, and
      `num_pairs`).

    Example:
      >>> loss, _ = pairwise_ranking_loss(jnp.zeros((1, 3)), jnp.array([[0, 1, 2]]))
      >>> float(loss[0])  # every pair at log 2
      0.6931...
    """
    rewards_BxK = as_float(rewards_BxK)
    valid_BxK = _valid(ranks_BxK, mask_BxK)
    ranks_BxK = jnp.asarray(ranks_BxK)
    better_BxKxK = (ranks_BxK[:, :, None] < ranks_BxK[:, None, :]) & (
        valid_BxK[:, :, None] & valid_BxK[:, None, :]
    )
    diff_BxKxK = rewards_BxK[:, :, None] - rewards_BxK[:, None, :]
    pair_loss = jnp.where(better_BxKxK, -jax.nn.log_sigmoid(diff_BxKxK), 0.0)
    num_pairs = jnp.sum(better_BxKxK, axis=(1, 2)).astype(rewards_BxK.dtype)
    denominator = jnp.maximum(num_pairs, 1.0)
    correct = jnp.sum(better_BxKxK & (diff_BxKxK > 0), axis=(1, 2)) / denominator
    loss = jnp.sum(pair_loss, axis=(1, 2)) / denominator
    return loss, {"rewards/accuracy": correct, "num_pairs": num_pairs}


def ensemble_rewards(
    rewards_ExB: jax.Array, *, method: str = "mean", uncertainty_penalty: float = 0.0
) -> jax.Array:
    """Combines the rewards of E ensemble members into one reward per example.

        mean:            mean_e r_e
        min:             min_e r_e                       (worst-case optimisation, WCO)
        mean_minus_std:  mean_e r_e - lambda * std_e r_e
        mean_minus_var:  mean_e r_e - lambda * var_e r_e (uncertainty-weighted optimisation, UWO)

    Coste et al. 2023, "Reward Model Ensembles Help Mitigate Overoptimization"; Eisenstein et al.
    2023. std/var are population statistics over members.

    Args:
      rewards_ExB: [E, B] member rewards.
      method: one of `ENSEMBLE_METHODS`.
      uncertainty_penalty: lambda >= 0 for the two uncertainty methods.

    Example:
      >>> ensemble_rewards(jnp.array([[1.0], [3.0]]), method="mean_minus_std",
      ...                  uncertainty_penalty=0.5).tolist()
      [1.5]
    """
    check_hyperparameters("ensemble_rewards", uncertainty_penalty=uncertainty_penalty)
    rewards_ExB = as_float(rewards_ExB)
    if method == "mean":
        return jnp.mean(rewards_ExB, axis=0)
    if method == "min":
        return jnp.min(rewards_ExB, axis=0)
    if method == "mean_minus_std":
        return jnp.mean(rewards_ExB, axis=0) - uncertainty_penalty * jnp.std(rewards_ExB, axis=0)
    if method == "mean_minus_var":
        return jnp.mean(rewards_ExB, axis=0) - uncertainty_penalty * jnp.var(rewards_ExB, axis=0)
    raise ValueError(f"ensemble_rewards: method must be one of {ENSEMBLE_METHODS}, got {method!r}")


def reward_normalization(
    rewards_N: jax.Array, *, mask_N: jax.Array | None = None, eps: float = 1e-8
) -> tuple[jax.Array, jax.Array]:
    """Gain and bias such that gain * r + bias has mean 0 and (population) std 1 on a reference
    set, e.g. rewards of reference-policy samples (Stiennon et al. 2020; Ouyang et al. 2022).

    Returns:
      (gain, bias) scalars; apply with `normalize_rewards`.

    Example:
      >>> gain, bias = reward_normalization(jnp.array([1.0, 3.0]))
      >>> normalize_rewards(jnp.array([1.0, 3.0]), gain, bias).round(4).tolist()
      [-1.0, 1.0]
    """
    rewards_N = as_float(rewards_N)
    mask_N = jnp.ones(rewards_N.shape) if mask_N is None else (jnp.asarray(mask_N) > 0)
    mask_N = mask_N.astype(rewards_N.dtype)
    n = jnp.maximum(jnp.sum(mask_N), 1.0)
    rewards_N = jnp.where(mask_N > 0, rewards_N, 0.0)
    mean = jnp.sum(rewards_N) / n
    var = jnp.sum(jnp.square(rewards_N - mean) * mask_N) / n
    gain = jax.lax.rsqrt(var + eps)
    return gain, -mean * gain


def normalize_rewards(rewards: jax.Array, gain: jax.Array, bias: jax.Array) -> jax.Array:
    """gain * rewards + bias (see `reward_normalization`)."""
    return gain * as_float(rewards) + bias


def process_reward_loss(
    step_logits_BxL: jax.Array, step_mask_BxL: jax.Array, step_labels_BxL: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-step binary cross-entropy of a process reward model (Lightman et al. 2023, "Let's
    Verify Step by Step"; soft labels as in Wang et al. 2024, Math-Shepherd):

        loss = sum_t m_t [-y_t log s(z_t) - (1 - y_t) log s(-z_t)] / sum_t m_t

    z: [B, L] per-token scores (a value head), read at each step's last token (m = step mask);
    y in [0, 1]: the step's label (a checker's 0/1, or the share of rollouts that still reach
    the answer). An outcome reward model is the same loss with only the last step kept.
    Metrics: `step_accuracy` (s(z) > 1/2 where y > 1/2), `predicted` and `label` (means over
    steps)."""
    z, y = as_float(step_logits_BxL), as_float(step_labels_BxL)
    m = (jnp.asarray(step_mask_BxL) > 0).astype(z.dtype)
    count = jnp.maximum(jnp.sum(m), 1.0)
    per_step = -(y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z))
    p = jax.nn.sigmoid(z)
    metrics = {
        "step_accuracy": jnp.sum(((p > 0.5) == (y > 0.5)) * m) / count,
        "predicted": jnp.sum(p * m) / count,
        "label": jnp.sum(y * m) / count,
    }
    return jnp.sum(per_step * m) / count, metrics


def solution_scores(
    step_logits_BxL: jax.Array, step_mask_BxL: jax.Array, how: str = "min"
) -> jax.Array:
    """[B] the score of each solution from its steps' probabilities s(z) at the step mask:
    "min" (the weakest step, as Lightman et al. and Wang et al. rank solutions), "product"
    (every step right, steps independent) or "last" (the last step's alone: an outcome reward
    model's score). A row needs at least one step."""
    if how not in SOLUTION_SCORES:
        raise ValueError(f"solution_scores: how must be one of {SOLUTION_SCORES}, got {how!r}")
    log_p = jax.nn.log_sigmoid(as_float(step_logits_BxL))
    m = jnp.asarray(step_mask_BxL) > 0
    if how == "min":
        return jnp.exp(jnp.min(jnp.where(m, log_p, 0.0), axis=1))
    if how == "product":
        return jnp.exp(jnp.sum(jnp.where(m, log_p, 0.0), axis=1))
    last = jnp.max(jnp.where(m, jnp.arange(m.shape[1]), -1), axis=1)
    return jnp.exp(jnp.take_along_axis(log_p, last[:, None], axis=1)[:, 0])
