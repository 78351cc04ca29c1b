"""Advantages and per-token rewards for online RL: KL estimators, KL-penalised rewards, GAE,
whitening, and the group baselines of GRPO and RLOO.

Everything here is a pure function of arrays. Token arrays are `[B, T]` over the *response*
positions with a `mask_BxT` that is 1 on scored tokens (the response and its closing EOS) and 0 on
padding; values at masked positions are ignored (they may be garbage, even NaN). GAE assumes the
scored tokens of a row are contiguous (right- or left-padded responses). Math is float32 (float64
inputs stay float64, which the gradient checks use).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.numerics import as_float, masked

KL_ESTIMATORS = ("k1", "k2", "k3")


# ----------------------------------------------------------------------------------------------
# KL estimators
# ----------------------------------------------------------------------------------------------


def token_kl(logps_BxT: jax.Array, ref_logps_BxT: jax.Array, *, estimator: str = "k1") -> jax.Array:
    """Per-token estimate of KL(pi || pi_ref) from log-probs of tokens sampled from pi.

    With log r = log pi_ref(y_t) - log pi(y_t) (Schulman, "Approximating KL Divergence", 2020):

        k1 = -log r                (unbiased, high variance, can be negative)
        k2 = (log r)^2 / 2         (biased, low variance, >= 0)
        k3 = (r - 1) - log r       (unbiased, low variance, >= 0; used by GRPO)

    Args:
      logps_BxT: policy log-probs of the sampled tokens.
      ref_logps_BxT: reference log-probs of the same tokens.
      estimator: one of "k1", "k2", "k3".

    Returns:
      The per-token estimate, same shape as the inputs (no masking is applied).

    Example:
      >>> float(token_kl(jnp.log(0.5), jnp.log(0.25), estimator="k3"))  # r = 0.5
      0.1931...
    """
    log_ratio = as_float(ref_logps_BxT) - as_float(logps_BxT)
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * jnp.square(log_ratio)
    if estimator == "k3":
        return jnp.expm1(log_ratio) - log_ratio
    raise ValueError(f"token_kl: estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


# ----------------------------------------------------------------------------------------------
# Per-token rewards
# ----------------------------------------------------------------------------------------------


def last_token_mask(mask_BxT: jax.Array) -> jax.Array:
    """One-hot [B, T] float of the last scored position of each row (all zeros if none)."""
    mask = jnp.asarray(mask_BxT) > 0
    T = mask.shape[-1]
    last_index_B = T - 1 - jnp.argmax(mask[:, ::-1], axis=-1)
    has_any_B = jnp.any(mask, axis=-1)
    one_hot = jnp.arange(T)[None, :] == last_index_B[:, None]
    return (one_hot & has_any_B[:, None]).astype(jnp.float32)


def ended_with_eos(tokens_BxT: jax.Array, mask_BxT: jax.Array, *, eos_id: int) -> jax.Array:
    """Bool [B]: whether the scored tokens of each response contain `eos_id`."""
    return jnp.any((tokens_BxT == eos_id) & (jnp.asarray(mask_BxT) > 0), axis=-1)


def kl_penalized_rewards(
    scores_B: jax.Array,
    logps_BxT: jax.Array,
    ref_logps_BxT: jax.Array,
    mask_BxT: jax.Array,
    *,
    kl_coef: float | jax.Array,
    estimator: str = "k1",
    ended_with_eos_B: jax.Array | None = None,
    missing_eos_penalty: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-token RLHF rewards: a KL penalty on every token plus the score on the last one.

        r_t = -kl_coef * KL_t                              (t a scored token, not the last)
        r_T = -kl_coef * KL_T + score - penalty * [no EOS]  (T the last scored token)

    as in Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences") and
    Ouyang et al. 2022 (InstructGPT). `missing_eos_penalty` (>= 0) is subtracted from the score of
    responses that never emitted EOS (TRL's `missing_eos_penalty`).

    Args:
      scores_B: sequence-level reward-model / gold scores.
      logps_BxT, ref_logps_BxT: policy and reference log-probs of the sampled tokens.
      mask_BxT: 1 on scored response tokens.
      kl_coef: KL coefficient (a scalar; may be traced, e.g. from an adaptive controller).
      estimator: KL estimator for the penalty ("k1" is the classic choice).
      ended_with_eos_B: bool [B]; required when `missing_eos_penalty` is non-zero.
      missing_eos_penalty: subtracted from the score of responses without EOS.

    Returns:
      (rewards_BxT zero on padding, metrics) with metrics `kl` (per-sequence summed KL [B]),
      `scores` (penalised scores [B]) and `rewards/total` (sum of rewards_BxT [B]).

    Example:
      >>> r, _ = kl_penalized_rewards(jnp.array([1.0]), jnp.zeros((1, 2)), jnp.zeros((1, 2)),
      ...                             jnp.ones((1, 2)), kl_coef=0.1)
      >>> r.tolist()
      [[0.0, 1.0]]
    """
    if missing_eos_penalty < 0:
        raise ValueError(
            f"kl_penalized_rewards: missing_eos_penalty must be >= 0, got {missing_eos_penalty}"
        )
    scores_B = as_float(scores_B)
    if missing_eos_penalty:
        if ended_with_eos_B is None:
            raise ValueError(
                "kl_penalized_rewards: missing_eos_penalty needs ended_with_eos_B "
                "(see alignax.rl.advantages.ended_with_eos)"
            )
        scores_B = scores_B - missing_eos_penalty * (
            1.0 - jnp.asarray(ended_with_eos_B, scores_B.dtype)
        )
    kl_BxT = masked(
        token_kl(masked(logps_BxT, mask_BxT), masked(ref_logps_BxT, mask_BxT), estimator=estimator),
        mask_BxT,
    )
    rewards_BxT = -kl_coef * kl_BxT + scores_B[:, None] * last_token_mask(mask_BxT)
    metrics = {
        "kl": jnp.sum(kl_BxT, axis=-1),
        "scores": scores_B,
        "rewards/total": jnp.sum(rewards_BxT, axis=-1),
    }
    return rewards_BxT, metrics


# ----------------------------------------------------------------------------------------------
# GAE and whitening
# ----------------------------------------------------------------------------------------------


def gae(
    rewards_BxT: jax.Array,
    values_BxT: jax.Array,
    mask_BxT: jax.Array,
    *,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al. 2016) over masked responses.

        delta_t = r_t + gamma * m_{t+1} V_{t+1} - V_t
        A_t     = delta_t + gamma * lam * m_{t+1} A_{t+1}
        R_t     = A_t + V_t

    The episode ends after the last scored token (the value after it is 0; PPO for LMs has no
    bootstrap beyond EOS / the length limit). Rewards and values at masked positions are ignored.
    Implemented as a reverse `lax.scan` over time.

    Args:
      rewards_BxT: per-token rewards (e.g. from `kl_penalized_rewards`).
      values_BxT: value-head predictions V(s_t) at the same positions.
      mask_BxT: 1 on scored tokens; scored tokens of a row must be contiguous.
      gamma: discount in [0, 1].
      lam: GAE lambda in [0, 1].

    Returns:
      (advantages_BxT, returns_BxT), both zero on masked positions.

    Example:
      >>> a, ret = gae(jnp.array([[0.0, 1.0]]), jnp.zeros((1, 2)), jnp.ones((1, 2)),
      ...              gamma=1.0, lam=1.0)
      >>> a.tolist()
      [[1.0, 1.0]]
    """
    for name, value in (("gamma", gamma), ("lam", lam)):
        if isinstance(value, (int, float)) and not 0.0 <= value <= 1.0:
            raise ValueError(f"gae: {name} must be in [0, 1], got {value}")
    mask_BxT = jnp.asarray(mask_BxT) > 0
    rewards_TxB = masked(rewards_BxT, mask_BxT).T
    values_TxB = masked(values_BxT, mask_BxT).T
    m_TxB = mask_BxT.astype(rewards_TxB.dtype).T
    next_m_TxB = jnp.concatenate([m_TxB[1:], jnp.zeros_like(m_TxB[:1])])
    next_values_TxB = jnp.concatenate([values_TxB[1:], jnp.zeros_like(values_TxB[:1])])
    deltas_TxB = rewards_TxB + gamma * next_m_TxB * next_values_TxB - values_TxB

    def step(next_advantage_B, inputs):
        delta_B, next_m_B = inputs
        advantage_B = delta_B + gamma * lam * next_m_B * next_advantage_B
        return advantage_B, advantage_B

    _, advantages_TxB = jax.lax.scan(
        step, jnp.zeros_like(deltas_TxB[0]), (deltas_TxB, next_m_TxB), reverse=True
    )
    advantages_BxT = advantages_TxB.T * mask_BxT
    returns_BxT = (advantages_TxB + values_TxB).T * mask_BxT
    return advantages_BxT, returns_BxT


def masked_mean_var(x: jax.Array, mask: jax.Array, *, unbiased: bool = True):
    """Mean and variance over all entries where mask is 1 (Bessel-corrected if `unbiased`)."""
    mask = (jnp.asarray(mask) > 0).astype(jnp.float32)
    x = masked(x, mask)
    n = jnp.sum(mask)
    mean = jnp.sum(x) / jnp.maximum(n, 1.0)
    var = jnp.sum(jnp.square(x - mean) * mask) / jnp.maximum(n, 1.0)
    if unbiased:
        var = var * n / jnp.maximum(n - 1.0, 1.0)
    return mean, var


def whiten(
    x: jax.Array, mask: jax.Array, *, shift_mean: bool = True, eps: float = 1e-8
) -> jax.Array:
    """Masked whitening: (x - mean) / sqrt(var + eps) over the masked entries of the whole batch.

    With `shift_mean=False` the mean is added back, (x - mean) / std + mean, as TRL / the
    InstructGPT-era implementations do for rewards. Masked positions come back as 0.

    Args:
      x: any shape (e.g. advantages [B, T] or scores [B]).
      mask: same shape, 1 on entries that count.
      shift_mean: whether the output has mean 0 (True) or keeps the input mean.
      eps: added to the variance.

    Example:
      >>> x = whiten(jnp.array([1.0, 3.0]), jnp.ones(2))  # mean 2, unbiased variance 2
      >>> [round(v, 6) for v in x.tolist()]  # +-1 / sqrt(2), to float32's precision
      [-0.707107, 0.707107]
    """
    mean, var = masked_mean_var(x, mask)
    out = (as_float(x) - mean) * jax.lax.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return masked(out, mask)


# ----------------------------------------------------------------------------------------------
# Group baselines (one prompt, G samples)
# ----------------------------------------------------------------------------------------------


def _as_groups(rewards: jax.Array, group_size: int | None, fn: str) -> jax.Array:
    rewards = as_float(rewards)
    if rewards.ndim == 2:
        if group_size is not None and group_size != rewards.shape[1]:
            raise ValueError(f"{fn}: group_size={group_size} but rewards are {rewards.shape}")
        return rewards
    if rewards.ndim != 1 or group_size is None or rewards.shape[0] % group_size:
        raise ValueError(
            f"{fn}: rewards must be [B, G], or [B*G] with group_size dividing its length; "
            f"got shape {rewards.shape} and group_size={group_size}"
        )
    return rewards.reshape(-1, group_size)


def group_advantages(
    rewards: jax.Array,
    *,
    group_size: int | None = None,
    scale_by_std: bool = True,
    eps: float = 1e-4,
) -> jax.Array:
    """GRPO group-normalised advantages (Shao et al. 2024, DeepSeekMath).

        A_i = (r_i - mean_g(r)) / (std_g(r) + eps)      (scale_by_std=True, GRPO)
        A_i =  r_i - mean_g(r)                      (scale_by_std=False: Dr. GRPO, Liu et al. 2025)

    std is the Bessel-corrected standard deviation within the group, as in TRL.

    Args:
      rewards: [B, G] or flat [B*G] (group-major: consecutive entries share a prompt).
      group_size: G; required for flat input.
      scale_by_std: divide by the group standard deviation.
      eps: added to the standard deviation.

    Returns:
      Advantages with the input's shape.

    Example:
      >>> group_advantages(jnp.array([[1.0, 0.0]]), scale_by_std=False).tolist()
      [[0.5, -0.5]]
    """
    groups_BxG = _as_groups(rewards, group_size, "group_advantages")
    centered = groups_BxG - jnp.mean(groups_BxG, axis=-1, keepdims=True)
    if scale_by_std:
        std = jnp.std(groups_BxG, axis=-1, keepdims=True, ddof=1)
        centered = centered / (std + eps)
    return centered.reshape(jnp.shape(rewards))


def rloo_advantages(rewards: jax.Array, *, group_size: int | None = None) -> jax.Array:
    """REINFORCE leave-one-out advantages (Kool et al. 2019; Ahmadian et al. 2024).

        A_i = r_i - (1 / (G - 1)) * sum_{j != i} r_j  =  G / (G - 1) * (r_i - mean(r))

    Args:
      rewards: [B, G] or flat [B*G] with `group_size`; G >= 2.

    Example:
      >>> rloo_advantages(jnp.array([[1.0, 0.0, 2.0]])).tolist()
      [[0.0, -1.5, 1.5]]
    """
    groups_BxG = _as_groups(rewards, group_size, "rloo_advantages")
    G = groups_BxG.shape[-1]
    if G < 2:
        raise ValueError(f"rloo_advantages: need at least 2 samples per prompt, got {G}")
    baseline = (jnp.sum(groups_BxG, axis=-1, keepdims=True) - groups_BxG) / (G - 1)
    return (groups_BxG - baseline).reshape(jnp.shape(rewards))


SCALE_REWARDS = ("group", "batch", "none")


def grpo_advantages(
    rewards: jax.Array, *, group_size: int, scale_rewards: str = "group", eps: float = 1e-4
) -> jax.Array:
    """Group-centred advantages with the reward scaling of TRL's `scale_rewards`.

        A_i = (r_i - mean_group(r)) / (std + eps)
        std:  "group"  the group's std (GRPO, Shao et al. 2024)
              "batch"  the std of all rewards in the batch (Hu et al. 2025, REINFORCE++;
                       TRL's scale_rewards="batch")
              "none"   no scaling (Dr. GRPO, Liu et al. 2025)

    std is Bessel-corrected in every case (as in TRL).

    Args:
      rewards: flat [B*G] (group-major) or [B, G].
      group_size: G.
      scale_rewards: one of `SCALE_REWARDS`.

    Example:
      >>> grpo_advantages(jnp.array([1.0, 0.0, 3.0, 3.0]), group_size=2,
      ...                 scale_rewards="none").tolist()
      [0.5, -0.5, 0.0, 0.0]
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(
            f"grpo_advantages: scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}"
        )
    if scale_rewards != "batch":
        return group_advantages(
            rewards, group_size=group_size, scale_by_std=scale_rewards == "group", eps=eps
        )
    centred = group_advantages(rewards, group_size=group_size, scale_by_std=False)
    return centred / (jnp.std(as_float(rewards), ddof=1) + eps)
