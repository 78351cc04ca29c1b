"""PPO for language models: clipped policy surrogate, clipped value loss, entropy bonus and the
PPO-ptx pretraining term; token aggregation shared with GRPO.

Token arrays are [B, T] over response positions with `mask_BxT` (1 on scored tokens). Per-example
outputs are chosen so that *their batch mean is the batch objective* for every aggregation mode
(see `aggregate_tokens`). Values at masked positions are ignored, even NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.losses.checks import check_hyperparameters
from alignax.numerics import as_float, masked

AGGREGATIONS = ("sequence_mean", "token_mean", "max_length", "sequence_sum")


def aggregate_tokens(
    x_BxT: jax.Array, mask_BxT: jax.Array, *, mode: str, max_length: int | None = None
) -> jax.Array:
    """Per-example [B] token aggregates whose mean over B is the batch aggregate.

        sequence_mean: sum_t m x / max(n_b, 1)          mean over tokens, then over sequences (GRPO)
        token_mean:    B * sum_t m x / max(N, 1)        one mean over all tokens in the batch
                                                       (DAPO, Yu et al. 2025); N = sum_b n_b
        max_length:    sum_t m x / max_length           constant normaliser
                                                       (Dr. GRPO, Liu et al. 2025)
        sequence_sum:  sum_t m x

    Args:
      x_BxT: per-token values.
      mask_BxT: 1 on tokens that count.
      mode: one of `AGGREGATIONS`.
      max_length: normaliser for "max_length" (default T, the padded length; pass the generation
        limit to make the result independent of padding).

    Example:
      >>> x, m = jnp.array([[1.0, 1.0], [4.0, 0.0]]), jnp.array([[1, 1], [1, 0]])
      >>> aggregate_tokens(x, m, mode="sequence_mean").tolist()
      [1.0, 4.0]
      >>> aggregate_tokens(x, m, mode="token_mean").tolist()  # mean 2.0 = 6 / 3
      [1.3333..., 2.6666...]
    """
    mask_BxT = (jnp.asarray(mask_BxT) > 0).astype(jnp.float32)
    total_B = jnp.sum(masked(x_BxT, mask_BxT), axis=-1)
    if mode == "sequence_mean":
        return total_B / jnp.maximum(jnp.sum(mask_BxT, axis=-1), 1.0)
    if mode == "token_mean":
        return total_B * mask_BxT.shape[0] / jnp.maximum(jnp.sum(mask_BxT), 1.0)
    if mode == "max_length":
        return total_B / (mask_BxT.shape[-1] if max_length is None else max_length)
    if mode == "sequence_sum":
        return total_B
    raise ValueError(f"aggregate_tokens: mode must be one of {AGGREGATIONS}, got {mode!r}")


def clipped_surrogate(
    logps_BxT: jax.Array,
    old_logps_BxT: jax.Array,
    advantages_BxT: jax.Array,
    mask_BxT: jax.Array,
    *,
    clip_eps_low: float,
    clip_eps_high: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-token clipped surrogate loss -min(rho A, clip(rho, 1 - e_low, 1 + e_high) A) and
    per-token indicator arrays (clipped, clipped low, clipped high) and approx KL, masked."""
    mask = jnp.asarray(mask_BxT) > 0
    log_ratio = masked(logps_BxT, mask) - masked(old_logps_BxT, mask)
    ratio = jnp.exp(log_ratio)
    advantages = masked(advantages_BxT, mask)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high) * advantages
    loss = masked(-jnp.minimum(unclipped, clipped), mask)
    # A token is "clipped" when the clipped branch is active (its gradient is zero).
    clipped_low = mask & (ratio < 1.0 - clip_eps_low) & (advantages < 0)
    clipped_high = mask & (ratio > 1.0 + clip_eps_high) & (advantages > 0)
    tokens = {
        "clipped": (clipped_low | clipped_high).astype(jnp.float32),
        "clipped_low": clipped_low.astype(jnp.float32),
        "clipped_high": clipped_high.astype(jnp.float32),
        # k3 estimate of KL(old || new) on tokens sampled from old (Schulman 2020).
        "approx_kl": masked(jnp.expm1(log_ratio) - log_ratio, mask),
        "ratio": masked(ratio, mask),
    }
    return loss, tokens


def _mean_over_tokens(x_BxT, mask_BxT):
    mask = (jnp.asarray(mask_BxT) > 0).astype(jnp.float32)
    return jnp.sum(x_BxT * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def ppo_policy_loss(
    logps_BxT: jax.Array,
    old_logps_BxT: jax.Array,
    advantages_BxT: jax.Array,
    mask_BxT: jax.Array,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    aggregation: str = "token_mean",
    max_length: int | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PPO clipped surrogate objective, token level (Schulman et al. 2017, eq. 7).

        rho_t = exp(logp_t - old_logp_t)
        l_t   = -min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps_high) A_t)
        loss  = aggregate_tokens(l, mask, mode=aggregation)

    Args:
      logps_BxT: current policy log-probs of the sampled tokens (differentiated).
      old_logps_BxT: log-probs under the policy that sampled them (constants).
      advantages_BxT: per-token advantages (e.g. whitened GAE), constants.
      mask_BxT: 1 on scored response tokens.
      clip_eps: lower (and by default upper) clip range, > 0.
      clip_eps_high: upper clip range (clip-higher, DAPO); default clip_eps.
      aggregation, max_length: see `aggregate_tokens`.

    Returns:
      (loss [B], metrics) with per-example `policy/clip_fraction`, `policy/approx_kl` (k3 of
      KL(old || new)), `policy/ratio` (token means).

    Example:
      >>> loss, m = ppo_policy_loss(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.ones((1, 2)),
      ...                           jnp.ones((1, 2)))
      >>> float(loss[0])  # -rho A with rho = 1, A = 1
      -1.0
    """
    clip_eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    check_hyperparameters("ppo_policy_loss", clip_eps=clip_eps, clip_eps_high=clip_eps_high)
    old_logps_BxT = jax.lax.stop_gradient(old_logps_BxT)
    advantages_BxT = jax.lax.stop_gradient(advantages_BxT)
    loss_BxT, tokens = clipped_surrogate(
        logps_BxT,
        old_logps_BxT,
        advantages_BxT,
        mask_BxT,
        clip_eps_low=clip_eps,
        clip_eps_high=clip_eps_high,
    )
    loss = aggregate_tokens(loss_BxT, mask_BxT, mode=aggregation, max_length=max_length)
    metrics = {
        "policy/clip_fraction": _mean_over_tokens(tokens["clipped"], mask_BxT),
        "policy/approx_kl": _mean_over_tokens(tokens["approx_kl"], mask_BxT),
        "policy/ratio": _mean_over_tokens(tokens["ratio"], mask_BxT),
    }
    return loss, metrics


def ppo_value_loss(
    values_BxT: jax.Array,
    old_values_BxT: jax.Array,
    returns_BxT: jax.Array,
    mask_BxT: jax.Array,
    *,
    value_clip_eps: float = 0.2,
    aggregation: str = "token_mean",
    max_length: int | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped value loss (the PPO2 / InstructGPT form).

        V_clip = old_V + clip(V - old_V, -vf_clip, vf_clip)
        l_t    = 1/2 max((V - R)^2, (V_clip - R)^2)

    Schulman et al. 2017 (baselines ppo2); Ziegler et al. 2019.

    Returns:
      (loss [B], metrics `value/clip_fraction`, `value/error` (mean squared error, token mean)).

    Example:
      >>> loss, _ = ppo_value_loss(jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.ones((1, 1)),
      ...                          jnp.ones((1, 1)))
      >>> float(loss[0])
      0.5
    """
    check_hyperparameters("ppo_value_loss", value_clip_eps=value_clip_eps)
    mask = jnp.asarray(mask_BxT) > 0
    values = masked(values_BxT, mask)
    old_values = jax.lax.stop_gradient(masked(old_values_BxT, mask))
    returns = jax.lax.stop_gradient(masked(returns_BxT, mask))
    clipped_values = old_values + jnp.clip(values - old_values, -value_clip_eps, value_clip_eps)
    unclipped_error = jnp.square(values - returns)
    clipped_error = jnp.square(clipped_values - returns)
    loss_BxT = masked(0.5 * jnp.maximum(unclipped_error, clipped_error), mask)
    metrics = {
        "value/clip_fraction": _mean_over_tokens(
            (clipped_error > unclipped_error).astype(jnp.float32), mask
        ),
        "value/error": _mean_over_tokens(unclipped_error, mask),
    }
    loss = aggregate_tokens(loss_BxT, mask, mode=aggregation, max_length=max_length)
    return loss, metrics


def ppo_loss(
    logps_BxT: jax.Array,
    old_logps_BxT: jax.Array,
    advantages_BxT: jax.Array,
    values_BxT: jax.Array,
    old_values_BxT: jax.Array,
    returns_BxT: jax.Array,
    mask_BxT: jax.Array,
    *,
    entropy_BxT: jax.Array | None = None,
    ptx_nll: jax.Array | None = None,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    value_clip_eps: float = 0.2,
    value_coef: float = 0.1,
    entropy_coef: float = 0.0,
    ptx_coef: float = 0.0,
    aggregation: str = "token_mean",
    max_length: int | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Full PPO(-ptx) loss: policy surrogate + value loss - entropy bonus + pretraining NLL.

        loss = L_clip + c_v L_value - c_H H + gamma_ptx NLL_ptx

    Schulman et al. 2017; PPO-ptx from Ouyang et al. 2022 (InstructGPT, eq. 2), where the
    pretraining term is the NLL of pretraining data under the policy.

    Args:
      entropy_BxT: optional per-token policy entropies (`alignax.logprobs.token_entropy`).
      ptx_nll: pretraining NLL, [B] or a scalar (the pretraining batch mean, when that batch has
        a different size); added as gamma_ptx * ptx_nll to every example.
      value_coef, entropy_coef, ptx_coef: >= 0.
      Others: as in `ppo_policy_loss` / `ppo_value_loss`.

    Returns:
      (loss [B], metrics): the policy and value metrics plus `loss/policy`, `loss/value`,
      `entropy` and `loss/ptx` where given.
    """
    check_hyperparameters(
        "ppo_loss", value_coef=value_coef, entropy_coef=entropy_coef, ptx_coef=ptx_coef
    )
    policy, policy_metrics = ppo_policy_loss(
        logps_BxT,
        old_logps_BxT,
        advantages_BxT,
        mask_BxT,
        clip_eps=clip_eps,
        clip_eps_high=clip_eps_high,
        aggregation=aggregation,
        max_length=max_length,
    )
    value, value_metrics = ppo_value_loss(
        values_BxT,
        old_values_BxT,
        returns_BxT,
        mask_BxT,
        value_clip_eps=value_clip_eps,
        aggregation=aggregation,
        max_length=max_length,
    )
    loss = policy + value_coef * value
    metrics = {**policy_metrics, **value_metrics, "loss/policy": policy, "loss/value": value}
    if entropy_BxT is not None:
        entropy = aggregate_tokens(entropy_BxT, mask_BxT, mode=aggregation, max_length=max_length)
        loss = loss - entropy_coef * entropy
        metrics["entropy"] = _mean_over_tokens(masked(entropy_BxT, mask_BxT), mask_BxT)
    if ptx_nll is not None:
        ptx = as_float(ptx_nll)
        loss = loss + ptx_coef * ptx
        metrics["loss/ptx"] = ptx
    return loss, metrics
