"""Losses on unpaired desirable / undesirable examples: KTO, its APO-zero variant and BCO.

Notation (per example, [B]): u = pi(y|x) - ref(y|x), the sequence log-ratio of the example's own
completion; label 1 = desirable, 0 = undesirable; s = sigmoid. A trainer calls them through
`alignax.losses.registry.get_unpaired_loss(name)` with an `UnpairedLogps`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from alignax.losses.checks import check_hyperparameters
from alignax.losses.spec import register
from alignax.numerics import as_float


class UnpairedLogps(NamedTuple):
    """What an unpaired loss may read, computed once by the trainer.

    policy/ref: [B] summed log-probs of each example's completion; labels: [B] 1 desirable,
    0 undesirable. policy_kl/ref_kl: [B'] log-probs of mismatched (prompt, other completion)
    pairs (KTO's reference point; "kl" input). undesirable_weights: [B] density-ratio weights of
    BCO's underlying-distribution matching ("density_ratio" input; None = 1).
    """

    policy: jax.Array
    ref: jax.Array
    labels: jax.Array
    policy_kl: jax.Array | None = None
    ref_kl: jax.Array | None = None
    undesirable_weights: jax.Array | None = None


def _unpaired_metrics(u, desirable, beta, policy_logps, **extra):
    rewards = beta * u
    return {
        "rewards/chosen": jnp.where(desirable, rewards, 0.0),
        "rewards/rejected": jnp.where(desirable, 0.0, rewards),
        "rewards/desirable_fraction": jnp.mean(desirable.astype(jnp.float32)),
        "logps/policy": as_float(policy_logps),
        **extra,
    }


@register("kto", paper="Ethayarajh et al. 2024, KTO", kind="unpaired", inputs=("kl",))
def kto_loss(
    policy_logps: jax.Array,
    ref_logps: jax.Array,
    labels: jax.Array,
    policy_kl_logps: jax.Array,
    ref_kl_logps: jax.Array,
    *,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """KTO loss for unpaired feedback (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect
    Theoretic Optimization", eq. 8; as in TRL's KTOTrainer).

        u    = pi(y|x) - ref(y|x)                        (sequence log-ratio)
        z0   = stop_grad(max(mean_B(pi(y'|x) - ref(y'|x)), 0))
        loss = w_D (1 - s(beta (u - z0)))    if label = 1 (desirable)
               w_U (1 - s(beta (z0 - u)))    if label = 0 (undesirable)

    z0, the reference point, estimates KL(pi || ref) from mismatched pairs (x, y') — the
    completion of another example in the batch — so it is a batch statistic: entries of the
    loss depend on the whole batch (under jit on a sharded batch the mean is global).

    Args:
      policy_logps, ref_logps: [B] sequence log-probs of the example's own completion.
      labels: [B] 1 desirable, 0 undesirable (bool or int).
      policy_kl_logps, ref_kl_logps: [B'] sequence log-probs of mismatched (x, y') pairs.
      beta: > 0.
      desirable_weight, undesirable_weight: w_D, w_U >= 0 (the paper suggests
        w_D n_D / (w_U n_U) in [1, 4/3]).

    Returns:
      (loss [B], metrics) with `kl` (z0), `rewards/chosen` (beta u on desirable rows, 0
      elsewhere), `rewards/rejected` (likewise on undesirable rows), `rewards/desirable_fraction`.

    Example:
      >>> loss, m = kto_loss(jnp.zeros(2), jnp.zeros(2), jnp.array([1, 0]), jnp.zeros(2),
      ...                    jnp.zeros(2), beta=0.1)
      >>> loss.tolist()  # 1 - s(0) on both
      [0.5, 0.5]
    """
    check_hyperparameters(
        "kto_loss",
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
    )
    u = as_float(policy_logps) - as_float(ref_logps)
    z0 = jnp.maximum(jnp.mean(as_float(policy_kl_logps) - as_float(ref_kl_logps)), 0.0)
    z0 = jax.lax.stop_gradient(z0)
    desirable = jnp.asarray(labels) > 0
    desirable_loss = desirable_weight * (1.0 - jax.nn.sigmoid(beta * (u - z0)))
    undesirable_loss = undesirable_weight * (1.0 - jax.nn.sigmoid(beta * (z0 - u)))
    loss = jnp.where(desirable, desirable_loss, undesirable_loss)
    rewards = beta * u
    metrics = {
        "kl": z0,
        "rewards/chosen": jnp.where(desirable, rewards, 0.0),
        "rewards/rejected": jnp.where(desirable, 0.0, rewards),
        "rewards/desirable_fraction": jnp.mean(desirable.astype(jnp.float32)),
        "logps/policy": as_float(policy_logps),
    }
    return loss, metrics


@register(
    "apo_zero_unpaired",
    paper="D'Oosterlinck et al. 2024, APO-zero (unpaired, TRL KTO)",
    kind="unpaired",
)
def apo_zero_unpaired_loss(
    policy_logps: jax.Array,
    ref_logps: jax.Array,
    labels: jax.Array,
    *,
    beta: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """APO-zero on unpaired data: raise desirable likelihoods, lower undesirable ones, each
    anchored at the reference (no reference point z0).

        loss = 1 - s(beta u)   if label = 1 (desirable)
               s(beta u)       if label = 0 (undesirable)

    D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions"
    (eq. 7 with the pair split; TRL's KTOTrainer loss_type="apo_zero_unpaired").

    Example:
      >>> loss, _ = apo_zero_unpaired_loss(jnp.array([1.0, 1.0]), jnp.zeros(2),
      ...                                  jnp.array([1, 0]), beta=1.0)
      >>> [round(float(x), 4) for x in loss]  # [1 - s(1), s(1)]
      [0.2689, 0.7311]
    """
    check_hyperparameters("apo_zero_unpaired_loss", beta=beta)
    u = as_float(policy_logps) - as_float(ref_logps)
    desirable = jnp.asarray(labels) > 0
    loss = jnp.where(desirable, 1.0 - jax.nn.sigmoid(beta * u), jax.nn.sigmoid(beta * u))
    return loss, _unpaired_metrics(u, desirable, beta, policy_logps)


def bco_density_ratio(
    desirable_probability: jax.Array, *, min_ratio: float = 0.5, max_ratio: float = 10.0
) -> jax.Array:
    """BCO's underlying-distribution-matching weights for undesirable examples, constants:

        w = clip(p / (1 - p), min_ratio, max_ratio)

    where p is a prompt classifier's probability that the example's prompt comes from the
    desirable set (Jung et al. 2024, sec. 3.3; TRL's min/max_density_ratio).
    """
    p = as_float(desirable_probability)
    ratio = jnp.exp(jnp.log(p) - jnp.log1p(-p))
    return jax.lax.stop_gradient(jnp.clip(ratio, min_ratio, max_ratio))


@register(
    "bco",
    paper="Jung et al. 2024, BCO (unpaired)",
    kind="unpaired",
    inputs=("density_ratio",),
    aux="reward_shift",
)
def bco_loss(
    policy_logps: jax.Array,
    ref_logps: jax.Array,
    labels: jax.Array,
    *,
    undesirable_weights: jax.Array | None = None,
    beta: float,
    reward_shift: float | jax.Array = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """BCO: a binary classifier (desirable vs undesirable) whose logit is the implicit reward.

        r = beta u,   loss = -log s(r - delta)           if label = 1
                             -w log s(-(r - delta))      if label = 0

    Jung et al. 2024, "Binary Classifier Optimization for Large Language Model Alignment"
    (eq. 8; TRL's BCOTrainer). delta is the running mean of the implicit rewards (kept by the
    trainer in `TrainState.aux`, declared `aux="reward_shift"`; the metric `rewards/mean` is this
    batch's mean reward); w is the density ratio of `bco_density_ratio` (1 without UDM).

    Args:
      undesirable_weights: [B] w (only undesirable rows read it); None means 1.
      reward_shift: delta, a constant (no gradient).

    Example:
      >>> loss, _ = bco_loss(jnp.zeros(2), jnp.zeros(2), jnp.array([1, 0]), beta=0.1)
      >>> [round(float(x), 4) for x in loss]  # log 2 on both
      [0.6931, 0.6931]
    """
    check_hyperparameters("bco_loss", beta=beta)
    u = as_float(policy_logps) - as_float(ref_logps)
    desirable = jnp.asarray(labels) > 0
    delta = jax.lax.stop_gradient(as_float(reward_shift))
    rewards = beta * u
    weights = 1.0 if undesirable_weights is None else as_float(undesirable_weights)
    loss = jnp.where(
        desirable,
        -jax.nn.log_sigmoid(rewards - delta),
        -weights * jax.nn.log_sigmoid(delta - rewards),
    )
    return loss, _unpaired_metrics(
        u, desirable, beta, policy_logps, **{"rewards/mean": jnp.mean(rewards)}
    )
