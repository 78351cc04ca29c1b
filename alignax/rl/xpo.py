"""XPO, exploratory preference optimisation (Xie et al. 2024, "Exploratory Preference
Optimization: Harnessing Implicit Q*-Approximation for Sample-Efficient RLHF"), as one jitted
online iteration: each prompt gets a response from the policy and one from the reference policy,
the judge (the task's reward or a reward model, as `score_fn`) prefers one, and the policy takes
DPO's loss on that fresh pair plus an exploration term:

    loss = -log sigmoid(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))])
           + alpha * log pi(y_ref)

with sequence log-probabilities and y_ref the reference's response. Minimising alpha * log pi(y_ref)
moves probability away from what the reference would say, towards responses it would rarely
produce (the paper's optimism bonus; TRL's XPOTrainer adds the same term). alpha = 0 is online
DPO against the reference's samples. Pairs whose two responses score the same carry no preference
and are left out of the DPO term (a verifier's 0/1 scores tie often).

    step = make_xpo_step(policy=..., score_fn=..., tx=..., config=XPOConfig(),
                         rollout_config=RolloutConfig(max_new_tokens=...), eos_id=...)
    state, metrics = step(state, prompt_batch, rng)      # state.params: the policy's
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from alignax import schema
from alignax.losses.online import xpo_loss
from alignax.models import Model
from alignax.rl.common import current_policy, minibatch_updates, rollout_metrics
from alignax.rl.rollout import RolloutConfig, collect, policy_response_fn
from alignax.state import TrainState


@dataclasses.dataclass(frozen=True)
class XPOConfig:
    """Every hyperparameter of `make_xpo_step`; `XPOConfig.from_config(config.xpo)`."""

    beta: float = 0.1
    alpha: float = 1e-5  # weight of the exploration term (TRL's default)
    epochs: int = 1
    num_minibatches: int = 1

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"xpo.beta={self.beta!r}: must be > 0")
        if self.alpha < 0:
            raise ValueError(f"xpo.alpha={self.alpha!r}: must be >= 0")

    @classmethod
    def from_config(cls, config, prefix: str = "xpo") -> XPOConfig:
        return schema.frozen(cls, config, prefix)


def default_xpo_config():
    """The `xpo` ConfigDict section: every `XPOConfig` field at its default."""
    return schema.section(XPOConfig())


def make_xpo_step(
    *,
    policy: Model,
    score_fn: Callable[..., jax.Array],
    tx: optax.GradientTransformation,
    config: XPOConfig,
    rollout_config: RolloutConfig,
    eos_id: int,
    gold_fn: Callable | None = None,
    score_inputs: tuple[str, ...] = (),
    policy_view: Callable | None = None,
):
    """The XPO iteration `step(state, batch, rng) -> (state, metrics)`; `score_fn(state, tokens,
    input_mask, loss_mask, **inputs)` judges each response (higher is preferred).
    `policy_view`: see `alignax.rl.common.current_policy`."""
    if not isinstance(config, XPOConfig):
        raise TypeError(f"config must be an XPOConfig (XPOConfig.from_config), got {type(config)}")
    if rollout_config.group_size != 1:
        raise ValueError(
            f"rollout.group_size={rollout_config.group_size}: XPO pairs one policy response "
            "with one reference response per prompt"
        )
    response_fn = policy_response_fn(policy)

    def sums(params, tokens, input_mask, mask):
        prompt_len = tokens.shape[1] - mask.shape[1]
        return jnp.sum(response_fn(params, tokens, input_mask, prompt_len)["logps"] * mask, -1)

    def loss_fn(params, mb):
        ours = sums(params, mb["ours_tokens"], mb["ours_input_mask"], mb["ours_mask"])
        theirs = sums(params, mb["ref_tokens"], mb["ref_input_mask"], mb["ref_mask"])
        ours_won = mb["ours_won"]
        loss_B, metrics = xpo_loss(
            jnp.where(ours_won, ours, theirs),
            jnp.where(ours_won, theirs, ours),
            jnp.where(ours_won, mb["ours_ref_sum"], mb["ref_ref_sum"]),
            jnp.where(ours_won, mb["ref_ref_sum"], mb["ours_ref_sum"]),
            theirs,
            mb["preferred"],
            beta=config.beta,
            alpha=config.alpha,
        )
        return jnp.mean(loss_B), jax.tree.map(jnp.mean, metrics)

    def xpo_step(state: TrainState, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        ours_rng, ref_rng, update_rng = jax.random.split(rng, 3)
        inputs = {k: batch[k] for k in score_inputs}

        def score(*sequences):
            return score_fn(state, *sequences, **inputs)

        policy_params = current_policy(state, policy_view)

        def rollout_of(sampling_params, key):
            return collect(
                policy=policy,
                params=policy_params,
                policy_params=sampling_params,
                ref_params=state.ref_params,
                response_fn=response_fn,
                prompts=batch,
                rng=key,
                score_fn=score,
                max_new_tokens=rollout_config.max_new_tokens,
                eos_id=eos_id,
                temperature=rollout_config.temperature,
            )

        ours, theirs = rollout_of(policy_params, ours_rng), rollout_of(state.ref_params, ref_rng)
        data = {
            "ours_tokens": ours.tokens,
            "ours_input_mask": ours.input_mask,
            "ours_mask": ours.response_mask,
            "ours_ref_sum": jnp.sum(ours.ref_logps * ours.response_mask, -1),
            "ref_tokens": theirs.tokens,
            "ref_input_mask": theirs.input_mask,
            "ref_mask": theirs.response_mask,
            "ref_ref_sum": jnp.sum(theirs.ref_logps * theirs.response_mask, -1),
            "ours_won": ours.scores > theirs.scores,
            "preferred": (ours.scores != theirs.scores).astype(jnp.float32),
        }
        state, update_metrics = minibatch_updates(
            state,
            data,
            loss_fn,
            tx,
            epochs=config.epochs,
            num_minibatches=config.num_minibatches,
            rng=update_rng,
            policy_view=policy_view,
        )
        metrics = {
            **update_metrics,
            **rollout_metrics(ours, gold_fn, inputs),
            "xpo/policy_win_rate": jnp.mean(data["ours_won"].astype(jnp.float32)),
            "xpo/ties": 1.0 - jnp.mean(data["preferred"]),
            "proxy/reference_mean": jnp.mean(theirs.scores),
        }
        return state, metrics

    return xpo_step
