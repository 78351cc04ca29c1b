"""Reference-free pairwise preference losses: SimPO, CPO and ORPO.

Notation, inputs and metrics: alignax.losses.pairwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.losses.checks import check_hyperparameters
from alignax.losses.pairwise import (
    chosen_nll,
    pair_metrics,
    smoothed_logistic,
    token_mean,
)
from alignax.losses.spec import register
from alignax.numerics import as_float

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
    mean_c = token_mean(policy_chosen_logps, chosen_lengths)
    mean_r = token_mean(policy_rejected_logps, rejected_lengths)
    loss = smoothed_logistic(beta * (mean_c - mean_r) - gamma, label_smoothing)
    return loss, pair_metrics(
        beta * mean_c, beta * mean_r, policy_chosen_logps, policy_rejected_logps
    )


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
        chosen = token_mean(policy_chosen_logps, chosen_lengths)
        rejected = token_mean(policy_rejected_logps, rejected_lengths)
    else:
        chosen, rejected = as_float(policy_chosen_logps), as_float(policy_rejected_logps)
    diff = chosen - rejected
    if form == "sigmoid":
        pref = smoothed_logistic(beta * diff, label_smoothing)
    elif form == "hinge":
        pref = jax.nn.relu(1.0 - beta * diff)
    elif form == "ipo":
        pref = jnp.square(diff - 1.0 / (2.0 * beta))
    else:
        pref = smoothed_logistic(beta * diff - gamma, label_smoothing)
    nll = chosen_nll(policy_chosen_logps, chosen_lengths, nll_reduction)
    metrics = pair_metrics(
        beta * chosen, beta * rejected, policy_chosen_logps, policy_rejected_logps
    )
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
    mean_c = token_mean(policy_chosen_logps, chosen_lengths)
    mean_r = token_mean(policy_rejected_logps, rejected_lengths)

    def log_odds(mean_logp):
        # log(1 - p) = log(-expm1(log p)); log p is capped just below 0 so p = 1 stays finite.
        mean_logp = jnp.minimum(mean_logp, -1e-6)
        return mean_logp - jnp.log(-jnp.expm1(mean_logp))

    log_odds_ratio = log_odds(mean_c) - log_odds(mean_r)
    nll = chosen_nll(policy_chosen_logps, chosen_lengths, nll_reduction)
    loss = nll - beta * jax.nn.log_sigmoid(log_odds_ratio)
    return loss, pair_metrics(
        beta * mean_c,
        beta * mean_r,
        policy_chosen_logps,
        policy_rejected_logps,
        nll=nll,
        log_odds_ratio=log_odds_ratio,
    )
