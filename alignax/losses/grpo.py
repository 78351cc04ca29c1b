"""Group policy-gradient losses (no value model): GRPO and its DAPO / Dr. GRPO aggregations,
GSPO (sequence-level ratio), CISPO (clipped importance weights), SAPO (soft gates) and RLOO
(sequence-level REINFORCE).

All take per-token log-probs [B, T] of sampled responses with `mask_BxT` (1 on scored tokens)
and one advantage per sequence (`alignax.rl.advantages`: `grpo_advantages`, `group_advantages`
or `rloo_advantages`), and return `(loss [B], metrics)` whose batch mean is the objective.
Math is float32, or float64 for float64 inputs (`as_float`).

Logged metrics: `kl` and the clip fractions are per-example values; with
`metric_aggregation="sequence_mean"` (default) their batch mean averages per sequence first,
with "token_mean" (TRL's logging) it is one mean over all tokens of the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.losses.checks import check_hyperparameters
from alignax.losses.ppo import aggregate_tokens, clipped_surrogate
from alignax.numerics import as_float, masked

# Log-ratios are clipped to +-LOG_RATIO_CAP before exponentiation in the sequence-level and soft
# losses: a ratio of e^20 is far outside any trust region, and the cap keeps values and
# gradients finite for any input (beyond it the ratio is flat, with zero gradient).
LOG_RATIO_CAP = 20.0


def _k3(log_ratio):
    """k3 = e^x - 1 - x of x = log(ref / pi) (`alignax.rl.advantages.token_kl`), continued linearly
    beyond x = LOG_RATIO_CAP (same value and slope there), so a token the reference finds e^20
    times likelier than the policy still gets a finite value and a (large) gradient."""
    capped = jnp.minimum(log_ratio, LOG_RATIO_CAP)
    return jnp.expm1(capped) - capped + jnp.expm1(capped) * (log_ratio - capped)


def _capped_ratio(log_ratio):
    return jnp.exp(jnp.clip(log_ratio, -LOG_RATIO_CAP, LOG_RATIO_CAP))


def _inputs(logps_BxT, old_logps_BxT, advantages_B, mask_BxT):
    """(masked logps, detached masked old logps, detached [B, T] advantages, bool mask)."""
    mask = jnp.asarray(mask_BxT) > 0
    if old_logps_BxT is None:
        old_logps_BxT = logps_BxT
    logps = masked(logps_BxT, mask)
    old = jax.lax.stop_gradient(masked(old_logps_BxT, mask))
    advantages = jax.lax.stop_gradient(as_float(advantages_B))
    if advantages.ndim == 1:
        advantages = jnp.broadcast_to(advantages[:, None], mask.shape)
    return logps, old, masked(advantages, mask), mask


def _add_kl(
    loss_BxT,
    metrics,
    logps,
    old,
    ref_logps_BxT,
    mask,
    *,
    beta,
    importance_weighted,
    metric_aggregation,
    fn,
):
    """Adds beta * k3 (times the current/old ratio if `importance_weighted`) per token."""
    if ref_logps_BxT is None:
        if isinstance(beta, (int, float)) and beta != 0:
            raise ValueError(f"{fn}: ref_logps_BxT is None but beta != 0")
        return loss_BxT
    ref = jax.lax.stop_gradient(masked(ref_logps_BxT, mask))
    kl_BxT = masked(_k3(ref - logps), mask)
    if importance_weighted:
        # E_old[(pi / pi_old) k3] = KL(pi || ref) off-policy; the ratio keeps its gradient, so
        # the gradient is that of the KL itself (DeepSeek-V3.2; TRL's use_bias_correction_kl).
        kl_BxT = masked(_capped_ratio(logps - old) * kl_BxT, mask)
    metrics["kl"] = aggregate_tokens(kl_BxT, mask, mode=metric_aggregation)
    return loss_BxT + beta * kl_BxT


def _clip_metrics(tokens, mask, metric_aggregation):
    return {
        "policy/clip_fraction": aggregate_tokens(tokens["clipped"], mask, mode=metric_aggregation),
        "policy/clip_low_fraction": aggregate_tokens(
            tokens["clipped_low"], mask, mode=metric_aggregation
        ),
        "policy/clip_high_fraction": aggregate_tokens(
            tokens["clipped_high"], mask, mode=metric_aggregation
        ),
    }


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
    kl_importance_weighted: bool = False,
    metric_aggregation: str = "sequence_mean",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GRPO loss (Shao et al. 2024, "DeepSeekMath", eq. 3) and its DAPO / Dr. GRPO variants.

        rho_t = exp(logp_t - old_logp_t)
        l_t   = -min(rho_t A, clip(rho_t, 1 - e_low, 1 + e_high) A) + beta * kl_t
        kl_t  = k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1
                (kl_importance_weighted: kl_t = rho_t * k3_t, an unbiased estimate of
                KL(pi || ref) from samples of the old policy; DeepSeek-V3.2, TRL 1.16's default)
        loss  = aggregate_tokens(l, mask, mode=aggregation)

    aggregation: "sequence_mean" (GRPO), "token_mean" (DAPO, Yu et al. 2025; use with
    clip_eps_high = 0.28, "clip-higher"), "max_length" (Dr. GRPO, Liu et al. 2025, with
    `max_length` = generation limit and unscaled advantages).

    Args:
      logps_BxT: current policy log-probs of the sampled tokens.
      old_logps_BxT: sampling-policy log-probs; None means a single update per rollout
        (rho = 1 in value, gradient of logp).
      ref_logps_BxT: reference log-probs; may be None when beta = 0.
      advantages_B: [B] per-sequence advantages (or [B, T] per-token); their precision is kept
        (float64 stays float64, lower precisions compute in float32).
      mask_BxT: 1 on scored response tokens.
      beta: KL coefficient >= 0.
      clip_eps_low, clip_eps_high: clip range (clip_eps_high defaults to clip_eps_low).
      kl_importance_weighted: weight k3 by the current/old ratio (see above).
      metric_aggregation: how `kl` and clip fractions average: "sequence_mean" (per sequence,
        then the batch) or "token_mean" (one mean over all tokens of the batch; TRL's logging).

    Returns:
      (loss [B], metrics) with per-example `kl`, `policy/clip_fraction`,
      `policy/clip_low_fraction`, `policy/clip_high_fraction`.

    Example:
      >>> loss, m = grpo_loss(jnp.zeros((1, 2)), None, jnp.zeros((1, 2)), jnp.array([1.0]),
      ...                     jnp.ones((1, 2)))
      >>> float(loss[0])
      -1.0
    """
    clip_eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high
    check_hyperparameters(
        "grpo_loss",
        kl_coef=beta,
        clip_eps_low=clip_eps_low,
        clip_eps_high=clip_eps_high,
        metric_aggregation=metric_aggregation,
    )
    logps, old, advantages, mask = _inputs(logps_BxT, old_logps_BxT, advantages_B, mask_BxT)
    loss_BxT, tokens = clipped_surrogate(
        logps, old, advantages, mask, clip_eps_low=clip_eps_low, clip_eps_high=clip_eps_high
    )
    metrics = _clip_metrics(tokens, mask, metric_aggregation)
    loss_BxT = _add_kl(
        loss_BxT,
        metrics,
        logps,
        old,
        ref_logps_BxT,
        mask,
        beta=beta,
        importance_weighted=kl_importance_weighted,
        metric_aggregation=metric_aggregation,
        fn="grpo_loss",
    )
    loss = aggregate_tokens(loss_BxT, mask, mode=aggregation, max_length=max_length)
    return loss, metrics


def gspo_loss(
    logps_BxT: jax.Array,
    old_logps_BxT: jax.Array | None,
    ref_logps_BxT: jax.Array | None,
    advantages_B: jax.Array,
    mask_BxT: jax.Array,
    *,
    beta: float = 0.0,
    clip_eps_low: float = 3e-4,
    clip_eps_high: float = 4e-4,
    kl_importance_weighted: bool = False,
    metric_aggregation: str = "sequence_mean",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GSPO: the clipped surrogate on a sequence-level, length-normalised importance ratio.

        s_i    = exp((1 / |y_i|) sum_t (logp_t - old_logp_t))      (geometric mean ratio)
        loss_i = -min(s_i A_i, clip(s_i, 1 - e_low, 1 + e_high) A_i) + beta * mean_t kl_t

    Zheng et al. 2025, "Group Sequence Policy Optimization" (eq. 5-7; e = 3e-4 / 4e-4 there;
    TRL's importance_sampling_level="sequence"). A whole sequence is clipped or not: the
    clip fractions count sequences (each of a sequence's tokens shares its value).

    Args: as `grpo_loss` (one update per rollout: pass old_logps_BxT=None).

    Example:
      >>> loss, _ = gspo_loss(jnp.log(jnp.array([[2.0, 0.5]])), jnp.zeros((1, 2)), None,
      ...                     jnp.array([1.0]), jnp.ones((1, 2)))
      >>> float(loss[0])  # s = exp((log 2 + log 0.5) / 2) = 1: unclipped, -s A
      -1.0
    """
    check_hyperparameters(
        "gspo_loss",
        kl_coef=beta,
        clip_eps_low=clip_eps_low,
        clip_eps_high=clip_eps_high,
        metric_aggregation=metric_aggregation,
    )
    logps, old, advantages, mask = _inputs(logps_BxT, old_logps_BxT, advantages_B, mask_BxT)
    count = jnp.maximum(jnp.sum(mask, axis=-1, keepdims=True), 1)
    sequence_log_ratio = jnp.sum(logps - old, axis=-1, keepdims=True) / count
    ratio = _capped_ratio(jnp.broadcast_to(sequence_log_ratio, mask.shape))
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high) * advantages
    loss_BxT = masked(-jnp.minimum(unclipped, clipped), mask)
    clipped_low = mask & (ratio < 1.0 - clip_eps_low) & (advantages < 0)
    clipped_high = mask & (ratio > 1.0 + clip_eps_high) & (advantages > 0)
    tokens = {
        "clipped": (clipped_low | clipped_high).astype(jnp.float32),
        "clipped_low": clipped_low.astype(jnp.float32),
        "clipped_high": clipped_high.astype(jnp.float32),
    }
    metrics = _clip_metrics(tokens, mask, metric_aggregation)
    loss_BxT = _add_kl(
        loss_BxT,
        metrics,
        logps,
        old,
        ref_logps_BxT,
        mask,
        beta=beta,
        importance_weighted=kl_importance_weighted,
        metric_aggregation=metric_aggregation,
        fn="gspo_loss",
    )
    return aggregate_tokens(loss_BxT, mask, mode="sequence_mean"), metrics


def cispo_loss(
    logps_BxT: jax.Array,
    old_logps_BxT: jax.Array | None,
    ref_logps_BxT: jax.Array | None,
    advantages_B: jax.Array,
    mask_BxT: jax.Array,
    *,
    beta: float = 0.0,
    clip_eps_low: float | None = None,
    clip_eps_high: float = 0.28,
    aggregation: str = "token_mean",
    max_length: int | None = None,
    kl_importance_weighted: bool = False,
    metric_aggregation: str = "sequence_mean",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CISPO: REINFORCE on every token, weighted by a clipped, detached importance ratio.

        r_t    = exp(logp_t - old_logp_t),   rhat_t = clip(r_t, 1 - e_low, 1 + e_high)
        l_t    = -sg(rhat_t) A log pi(y_t) + beta * kl_t
        loss   = aggregate_tokens(l, mask, mode=aggregation)    (token_mean in the paper)

    MiniMax et al. 2025, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning
    Attention" (eq. 4-5). Unlike PPO's clip, no token loses its gradient: the weight is clipped,
    not the objective. The paper sets no lower bound (e_low = None here) and tunes e_high.

    Example:
      >>> loss, _ = cispo_loss(jnp.log(jnp.array([[0.5, 0.25]])), jnp.log(jnp.array([[0.25,
      ...     0.25]])), None, jnp.array([1.0]), jnp.ones((1, 2)), clip_eps_high=0.5)
      >>> float(loss[0])  # rhat = [1.5, 1]: -(1.5 log 0.5 + log 0.25) / 2
      1.2130...
    """
    check_hyperparameters(
        "cispo_loss",
        kl_coef=beta,
        clip_eps_low=clip_eps_low,
        clip_eps_high=clip_eps_high,
        metric_aggregation=metric_aggregation,
    )
    logps, old, advantages, mask = _inputs(logps_BxT, old_logps_BxT, advantages_B, mask_BxT)
    ratio = jnp.exp(jnp.minimum(logps - old, LOG_RATIO_CAP))
    low = 0.0 if clip_eps_low is None else 1.0 - clip_eps_low
    weight = jax.lax.stop_gradient(jnp.clip(ratio, low, 1.0 + clip_eps_high))
    loss_BxT = masked(-weight * advantages * logps, mask)
    clipped_high = mask & (ratio > 1.0 + clip_eps_high)
    clipped_low = mask & (ratio < low)
    tokens = {
        "clipped": (clipped_low | clipped_high).astype(jnp.float32),
        "clipped_low": clipped_low.astype(jnp.float32),
        "clipped_high": clipped_high.astype(jnp.float32),
    }
    metrics = _clip_metrics(tokens, mask, metric_aggregation)
    loss_BxT = _add_kl(
        loss_BxT,
        metrics,
        logps,
        old,
        ref_logps_BxT,
        mask,
        beta=beta,
        importance_weighted=kl_importance_weighted,
        metric_aggregation=metric_aggregation,
        fn="cispo_loss",
    )
    return aggregate_tokens(loss_BxT, mask, mode=aggregation, max_length=max_length), metrics


def sapo_loss(
    logps_BxT: jax.Array,
    old_logps_BxT: jax.Array | None,
    ref_logps_BxT: jax.Array | None,
    advantages_B: jax.Array,
    mask_BxT: jax.Array,
    *,
    beta: float = 0.0,
    tau_positive: float = 1.0,
    tau_negative: float = 1.05,
    aggregation: str = "token_mean",
    max_length: int | None = None,
    kl_importance_weighted: bool = False,
    metric_aggregation: str = "sequence_mean",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SAPO: a soft, temperature-controlled gate on the token ratio instead of a hard clip.

        r_t  = exp(logp_t - old_logp_t)
        f(r) = (4 / tau) s(tau (r - 1)),   tau = tau_positive if A > 0 else tau_negative
        l_t  = -f(r_t) A + beta * kl_t

    Gao et al. 2025, "Soft Adaptive Policy Optimization" (Qwen; tau_pos = 1, tau_neg = 1.05).
    df/dr = 4 s (1 - s) is 1 at r = 1 (on-policy: the plain policy gradient) and decays smoothly
    as r leaves 1; tau_negative > tau_positive damps negative-advantage updates faster.

    Example:
      >>> loss, _ = sapo_loss(jnp.zeros((1, 1)), None, None, jnp.array([2.0]), jnp.ones((1, 1)))
      >>> float(loss[0])  # -(4 / 1) s(0) 2
      -4.0
    """
    check_hyperparameters(
        "sapo_loss",
        kl_coef=beta,
        tau_positive=tau_positive,
        tau_negative=tau_negative,
        metric_aggregation=metric_aggregation,
    )
    logps, old, advantages, mask = _inputs(logps_BxT, old_logps_BxT, advantages_B, mask_BxT)
    ratio = _capped_ratio(logps - old)
    tau = jnp.where(advantages > 0, tau_positive, tau_negative)
    gate = 4.0 / tau * jax.nn.sigmoid(tau * (ratio - 1.0))
    loss_BxT = masked(-gate * advantages, mask)
    metrics = {"policy/gate": aggregate_tokens(masked(gate, mask), mask, mode=metric_aggregation)}
    loss_BxT = _add_kl(
        loss_BxT,
        metrics,
        logps,
        old,
        ref_logps_BxT,
        mask,
        beta=beta,
        importance_weighted=kl_importance_weighted,
        metric_aggregation=metric_aggregation,
        fn="sapo_loss",
    )
    return aggregate_tokens(loss_BxT, mask, mode=aggregation, max_length=max_length), metrics


def rloo_loss(
    logps_BxT: jax.Array,
    old_logps_BxT: jax.Array | None,
    advantages_B: jax.Array,
    mask_BxT: jax.Array,
    *,
    clip_eps_low: float = 0.2,
    clip_eps_high: float | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """RLOO: REINFORCE on the whole-sequence log-prob with a leave-one-out baseline.

        rho_i  = exp(sum_t (logp_t - old_logp_t))                (one ratio per sequence)
        loss_i = -min(rho_i A_i, clip(rho_i, 1 - e_low, 1 + e_high) A_i)

    with A_i = R_i - mean_{j != i} R_j (`alignax.rl.advantages.rloo_advantages`) of the
    KL-penalised sequence rewards R = r - beta * sum_t (logp_old - ref) (the KL is in the reward,
    not the loss). Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization
    for Learning from Human Feedback in LLMs" (Kool et al. 2019's baseline); TRL's RLOOTrainer,
    whose clip range is [1 - epsilon, 1 + epsilon_high] (epsilon_high defaults to epsilon).
    On-policy (one update, old_logps_BxT=None) the gradient is -A grad log pi(y|x); the clip
    only matters for several updates per rollout. The per-token form (GRPO's objective with a
    leave-one-out baseline) is `grpo_loss` with `rloo_advantages` (rl.py's baseline "rloo_token").

    Args:
      logps_BxT, old_logps_BxT, mask_BxT: as `grpo_loss`.
      advantages_B: [B] per-sequence advantages.
      clip_eps_low, clip_eps_high: clip range of the sequence ratio (clip_eps_high defaults to
        clip_eps_low: symmetric, as Ahmadian et al. 2024).

    Returns:
      (loss [B], metrics) with per-example `policy/clip_fraction`, `policy/clip_low_fraction`,
      `policy/clip_high_fraction` (0 or 1: whether the sequence was clipped) and `policy/ratio`.

    Example:
      >>> loss, _ = rloo_loss(jnp.zeros((1, 3)), None, jnp.array([1.5]), jnp.ones((1, 3)))
      >>> float(loss[0])  # rho = 1: -A (not divided by the length)
      -1.5
    """
    clip_eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high
    check_hyperparameters("rloo_loss", clip_eps_low=clip_eps_low, clip_eps_high=clip_eps_high)
    if jnp.ndim(advantages_B) != 1:
        raise ValueError(f"rloo_loss: advantages_B must be [B], got {jnp.shape(advantages_B)}")
    logps, old, _, mask = _inputs(logps_BxT, old_logps_BxT, advantages_B, mask_BxT)
    ratio = _capped_ratio(jnp.sum(logps - old, axis=-1))
    advantage = jax.lax.stop_gradient(as_float(advantages_B))
    unclipped = ratio * advantage
    clipped = jnp.clip(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high) * advantage
    loss = -jnp.minimum(unclipped, clipped)
    clipped_low = (ratio < 1.0 - clip_eps_low) & (advantage < 0)
    clipped_high = (ratio > 1.0 + clip_eps_high) & (advantage > 0)
    return loss, {
        "policy/clip_fraction": (clipped_low | clipped_high).astype(jnp.float32),
        "policy/clip_low_fraction": clipped_low.astype(jnp.float32),
        "policy/clip_high_fraction": clipped_high.astype(jnp.float32),
        "policy/ratio": ratio,
    }
