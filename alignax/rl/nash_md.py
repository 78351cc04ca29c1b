"""Nash-MD (Munos et al. 2024, "Nash Learning from Human Feedback", section 7), as one jitted
online iteration: each prompt gets a response y from the policy and one y' from the per-token
geometric mixture of the policy and the reference,

    pi_mix(y_t | ...)  proportional to  pi(y_t | ...)^(1 - c) * pi_ref(y_t | ...)^c

(c = mixture_coef; `alignax.sampling.geometric_mixture`; the paper's regularised opponent, c
being its beta * eta). The judge's preference P(y > y') = sigmoid(r(y) - r(y')) (a reward model,
a task's reward or a verifier as `score_fn`; the Bradley-Terry reading of its scores) drives a
policy-gradient step, with 1/2 as control variate, and a REINFORCE estimate of the KL to the
reference keeps the policy near it:

    loss = beta * sum_t sg(log pi(y_t) - log pi_ref(y_t)) * log pi(y_t)
           - (P(y > y') - 1/2) * sum_t log pi(y_t)

(sequence sums over the response; sg: stop-gradient). The gradient of the first term is the
score-function estimate of the gradient of KL(pi || pi_ref) on the policy's own sample. This is
also the loss of TRL's NashMDTrainer (its `beta` and `mixture_coef`, defaults 0.1 and 0.5).
mixture_coef = 0 plays the policy against itself (P's expectation is 1/2: self-play, no signal
but noise); 1 plays it against the reference alone.

    step = make_nash_md_step(policy=..., score_fn=..., tx=..., config=NashMDConfig(),
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
from alignax.losses.online import nash_md_loss
from alignax.models import Model
from alignax.rl.common import current_policy, minibatch_updates, rollout_metrics
from alignax.rl.rollout import RolloutConfig, collect, policy_response_fn
from alignax.sampling import sample
from alignax.state import TrainState


@dataclasses.dataclass(frozen=True)
class NashMDConfig:
    """Every hyperparameter of `make_nash_md_step`; `NashMDConfig.from_config(config.nash_md)`."""

    beta: float = 0.1  # weight of the KL-to-reference term
    mixture_coef: float = 0.5  # weight of the reference in the opponent's geometric mixture
    epochs: int = 1
    num_minibatches: int = 1

    def __post_init__(self):
        if self.beta < 0:
            raise ValueError(f"nash_md.beta={self.beta!r}: must be >= 0")
        if not 0.0 <= self.mixture_coef <= 1.0:
            raise ValueError(f"nash_md.mixture_coef={self.mixture_coef!r}: must be in [0, 1]")

    @classmethod
    def from_config(cls, config, prefix: str = "nash_md") -> NashMDConfig:
        return schema.frozen(cls, config, prefix)


def default_nash_md_config():
    """The `nash_md` ConfigDict section: every `NashMDConfig` field at its default."""
    return schema.section(NashMDConfig())


def make_nash_md_step(
    *,
    policy: Model,
    score_fn: Callable[..., jax.Array],
    tx: optax.GradientTransformation,
    config: NashMDConfig,
    rollout_config: RolloutConfig,
    eos_id: int,
    gold_fn: Callable | None = None,
    score_inputs: tuple[str, ...] = (),
    policy_view: Callable | None = None,
):
    """The Nash-MD iteration `step(state, batch, rng) -> (state, metrics)`; `score_fn(state,
    tokens, input_mask, loss_mask, **inputs)` scores each response (higher is preferred).
    `policy_view`: see `alignax.rl.common.current_policy`."""
    if not isinstance(config, NashMDConfig):
        raise TypeError(
            f"config must be a NashMDConfig (NashMDConfig.from_config), got {type(config)}"
        )
    if rollout_config.group_size != 1:
        raise ValueError(
            f"rollout.group_size={rollout_config.group_size}: Nash-MD pairs one policy response "
            "with one mixture response per prompt"
        )
    response_fn = policy_response_fn(policy)

    def loss_fn(params, mb):
        prompt_len = mb["tokens"].shape[1] - mb["mask"].shape[1]
        logps = response_fn(params, mb["tokens"], mb["input_mask"], prompt_len)["logps"]
        loss_B, metrics = nash_md_loss(
            logps, mb["ref_logps"], mb["mask"], mb["preference"], beta=config.beta
        )
        return jnp.mean(loss_B), jax.tree.map(jnp.mean, metrics)

    def nash_md_step(state: TrainState, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        ours_rng, mixture_rng, update_rng = jax.random.split(rng, 3)
        inputs = {k: batch[k] for k in score_inputs}

        def score(*sequences):
            return score_fn(state, *sequences, **inputs)

        policy_params = current_policy(state, policy_view)
        ours = collect(
            policy=policy,
            params=policy_params,
            policy_params=policy_params,
            ref_params=state.ref_params,
            response_fn=response_fn,
            prompts=batch,
            rng=ours_rng,
            score_fn=score,
            max_new_tokens=rollout_config.max_new_tokens,
            eos_id=eos_id,
            temperature=rollout_config.temperature,
        )
        opponent = sample(
            policy,
            policy_params,
            batch["prompt_tokens"],
            batch["prompt_mask"],
            mixture_rng,
            max_new_tokens=rollout_config.max_new_tokens,
            eos_id=eos_id,
            temperature=rollout_config.temperature,
            mixture=(state.ref_params, config.mixture_coef),
        )
        opponent_scores = jax.lax.stop_gradient(
            score(opponent.tokens, opponent.input_mask, opponent.loss_mask)
        )
        data = {
            "tokens": ours.tokens,
            "input_mask": ours.input_mask,
            "mask": ours.response_mask,
            "ref_logps": ours.ref_logps,
            "preference": jax.nn.sigmoid(ours.scores - opponent_scores),
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
            "nash_md/preference": jnp.mean(data["preference"]),
            "proxy/mixture_mean": jnp.mean(opponent_scores),
        }
        return state, metrics

    return nash_md_step
