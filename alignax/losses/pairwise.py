"""What every offline pairwise preference loss shares: its inputs and notation, the log-ratios,
the NLL term and the metrics.

The losses, by family: the logistic (Bradley-Terry) family in dpo.py (DPO, robust / cDPO,
length-normalised, RPO, reference-free DPO, AOT, BCO-pair, NCA, EXO, DiscoPOP); regression,
hinge and anchored losses in regression.py (SLiC hinge, IPO, SPPO-hard, APO); the
reference-free family in reference_free.py (SimPO, CPO, ORPO); and the losses beyond TRL's
defaults in dpo_extensions.py (f-DPO, LD-DPO, WPO, AlphaPO, SFT, MPO).

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

from alignax.losses.checks import check_hyperparameters
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


def log_ratios(pc, pr, rc, rr):
    return as_float(pc) - as_float(rc), as_float(pr) - as_float(rr)


def token_mean(logps_B, lengths_B) -> jax.Array:
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
        return -token_mean(policy_chosen_logps, chosen_lengths)
    pc = as_float(policy_chosen_logps)
    total = jnp.maximum(jnp.sum(as_float(chosen_lengths)), 1.0)
    return -pc * pc.shape[0] / total


def smoothed_logistic(x, label_smoothing) -> jax.Array:
    """-(1 - eps) log s(x) - eps log s(-x): logistic loss with the label flipped w.p. eps."""
    return -(1.0 - label_smoothing) * jax.nn.log_sigmoid(x) - label_smoothing * jax.nn.log_sigmoid(
        -x
    )


def pair_metrics(chosen_rewards, rejected_rewards, pc, pr, **extra) -> dict[str, jax.Array]:
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
