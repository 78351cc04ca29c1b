"""GRPO (Shao et al. 2024) and RLOO (Ahmadian et al. 2024) as one jitted iteration: G samples per
prompt, the group as the baseline, no critic; the surrogate is GRPO's clipped one or one of its
successors (GSPO, CISPO, SAPO; `alignax.losses.grpo`).

    step = make_grpo_step(policy=..., score_fn=..., tx=..., config=GRPOConfig(...),
                          rollout_config=RolloutConfig(group_size=8, ...), eos_id=...)
    state, metrics = step(state, prompt_batch, rng)      # state.params: the policy's
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from alignax import schema
from alignax.losses import grpo as group_losses
from alignax.losses.ppo import AGGREGATIONS
from alignax.models import Model
from alignax.rl import advantages as adv
from alignax.rl.common import current_policy, minibatch_updates, rollout_metrics
from alignax.rl.rollout import ResponseFn, RolloutConfig, collect, policy_response_fn
from alignax.state import TrainState

# "grpo": group mean, scaled by `scale_rewards`; "dr_grpo": unscaled; "rloo": sequence-level
# REINFORCE with a leave-one-out baseline and the KL in the reward; "rloo_token": a leave-one-out
# baseline with the per-token `loss`.
BASELINES = ("grpo", "dr_grpo", "rloo", "rloo_token")


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """Every hyperparameter of `make_grpo_step`; `GRPOConfig.from_config(config.grpo)` reads an
    experiment's `grpo` section. The group size, length and temperature of the samples are the
    `rollout` section's (`RolloutConfig`)."""

    baseline: str = "grpo"  # one of BASELINES
    scale_rewards: str = "group"  # "batch" | "none"; read by baseline "grpo" only
    loss: str = "grpo"  # "gspo" | "cispo" | "sapo"; every baseline but "rloo"
    kl_importance_weighted: bool = False  # k3 times the current/old ratio (TRL 1.16)
    # logged kl / clip fractions: per sequence then batch, or "token_mean" (TRL's logging)
    metric_aggregation: str = "sequence_mean"
    epochs: int = 1
    num_minibatches: int = 2
    beta: float = 0.04
    clip_eps_low: float = 0.2
    # The upper clip of every clipped objective, RLOO's sequence ratio included; configs/grpo.py's
    # rloo and rloo_token presets set it to clip_eps_low (symmetric, Ahmadian et al. 2024).
    clip_eps_high: float = 0.28
    aggregation: str = "sequence_mean"  # "token_mean" (DAPO), "max_length" (Dr. GRPO)

    def __post_init__(self):
        schema.check_choice("grpo", "baseline", self.baseline, BASELINES)
        schema.check_choice("grpo", "loss", self.loss, tuple(GROUP_LOSSES))
        schema.check_choice("grpo", "scale_rewards", self.scale_rewards, adv.SCALE_REWARDS)
        schema.check_choice("grpo", "aggregation", self.aggregation, AGGREGATIONS)
        schema.check_choice("grpo", "metric_aggregation", self.metric_aggregation, AGGREGATIONS)
        if self.baseline == "rloo" and self.loss != "grpo":
            raise ValueError(
                f"grpo.baseline='rloo' is sequence-level REINFORCE; grpo.loss={self.loss!r} "
                "applies to the other baselines (use baseline='rloo_token' for a leave-one-out "
                "baseline with it)"
            )

    @classmethod
    def from_config(cls, config, prefix: str = "grpo") -> GRPOConfig:
        return schema.frozen(cls, config, prefix)


def default_grpo_config():
    """The `grpo` ConfigDict section: every `GRPOConfig` field at its default."""
    return schema.section(GRPOConfig())


# grpo.loss -> builder of `fn(logps, old_logps, ref_logps, advantages, mask) -> (loss_B, metrics)`
# from a GRPOConfig and the rollout's max_new_tokens (the "max_length" aggregation's constant
# normaliser; GSPO keeps its sequence aggregation; SAPO has no clip range).
GROUP_LOSSES = {
    "grpo": lambda g, max_new_tokens: functools.partial(
        group_losses.grpo_loss,
        beta=g.beta,
        clip_eps_low=g.clip_eps_low,
        clip_eps_high=g.clip_eps_high,
        aggregation=g.aggregation,
        max_length=max_new_tokens,
        kl_importance_weighted=g.kl_importance_weighted,
        metric_aggregation=g.metric_aggregation,
    ),
    "gspo": lambda g, max_new_tokens: functools.partial(
        group_losses.gspo_loss,
        beta=g.beta,
        clip_eps_low=g.clip_eps_low,
        clip_eps_high=g.clip_eps_high,
        kl_importance_weighted=g.kl_importance_weighted,
        metric_aggregation=g.metric_aggregation,
    ),
    "cispo": lambda g, max_new_tokens: functools.partial(
        group_losses.cispo_loss,
        beta=g.beta,
        clip_eps_low=None,
        clip_eps_high=g.clip_eps_high,
        aggregation=g.aggregation,
        max_length=max_new_tokens,
        kl_importance_weighted=g.kl_importance_weighted,
        metric_aggregation=g.metric_aggregation,
    ),
    "sapo": lambda g, max_new_tokens: functools.partial(
        group_losses.sapo_loss,
        beta=g.beta,
        aggregation=g.aggregation,
        max_length=max_new_tokens,
        kl_importance_weighted=g.kl_importance_weighted,
        metric_aggregation=g.metric_aggregation,
    ),
}


def group_baseline_advantages(rollout, config: GRPOConfig, group_size: int) -> jax.Array:
    """One advantage per sequence [B*G] from the group's scores, per `config.baseline`."""
    if config.baseline == "rloo":
        # Ahmadian et al. 2024: the KL penalty is in the sequence reward (k1, summed).
        kl_B = jnp.sum((rollout.logps - rollout.ref_logps) * rollout.response_mask, axis=-1)
        return adv.rloo_advantages(rollout.scores - config.beta * kl_B, group_size=group_size)
    if config.baseline == "rloo_token":
        return adv.rloo_advantages(rollout.scores, group_size=group_size)
    return adv.grpo_advantages(
        rollout.scores,
        group_size=group_size,
        scale_rewards=config.scale_rewards if config.baseline == "grpo" else "none",
    )


def grpo_objective(response_fn: ResponseFn, config: GRPOConfig, max_new_tokens: int):
    """`loss_fn(params, minibatch) -> (loss, metrics)`: RLOO's sequence-level REINFORCE for
    baseline 'rloo', else the per-token surrogate `config.loss`."""
    group_loss = GROUP_LOSSES[config.loss](config, max_new_tokens)

    def loss_fn(params, mb):
        prompt_len = mb["tokens"].shape[1] - mb["mask"].shape[1]
        logps = response_fn(params, mb["tokens"], mb["input_mask"], prompt_len)["logps"]
        if config.baseline == "rloo":
            loss_B, metrics = group_losses.rloo_loss(
                logps,
                mb["old_logps"],
                mb["advantages"],
                mb["mask"],
                clip_eps_low=config.clip_eps_low,
                clip_eps_high=config.clip_eps_high,
            )
        else:
            loss_B, metrics = group_loss(
                logps, mb["old_logps"], mb["ref_logps"], mb["advantages"], mb["mask"]
            )
        return jnp.mean(loss_B), jax.tree.map(jnp.mean, metrics)

    return loss_fn


def make_grpo_step(
    *,
    policy: Model,
    score_fn: Callable[..., jax.Array],
    tx: optax.GradientTransformation,
    config: GRPOConfig,
    rollout_config: RolloutConfig,
    eos_id: int,
    gold_fn: Callable | None = None,
    score_inputs: tuple[str, ...] = (),
    policy_view: Callable | None = None,
):
    """The group iteration `step(state, batch, rng) -> (state, metrics)`: each prompt of the
    batch is sampled `rollout_config.group_size` times. `score_fn(state, tokens, input_mask,
    loss_mask, **inputs)` and `gold_fn(tokens, input_mask, loss_mask, **inputs)` (logged only)
    get the batch entries named in `score_inputs` (e.g. a verifier's `answer_tokens`), repeated
    like the prompts. `policy_view`: see `alignax.rl.common.current_policy`."""
    if not isinstance(config, GRPOConfig):
        raise TypeError(f"config must be a GRPOConfig (GRPOConfig.from_config), got {type(config)}")
    group_size = rollout_config.group_size
    if group_size < 2:
        raise ValueError(
            f"rollout.group_size={group_size}: a group baseline needs at least 2 samples per prompt"
        )
    response_fn = policy_response_fn(policy)
    loss_fn = grpo_objective(response_fn, config, rollout_config.max_new_tokens)

    def grpo_step(state: TrainState, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        rollout_rng, update_rng = jax.random.split(rng)
        prompts = jax.tree.map(lambda x: jnp.repeat(x, group_size, axis=0), batch)
        inputs = {k: prompts[k] for k in score_inputs}

        def score(*sequences):
            return score_fn(state, *sequences, **inputs)

        policy_params = current_policy(state, policy_view)
        rollout = collect(
            policy=policy,
            params=policy_params,
            policy_params=policy_params,
            ref_params=state.ref_params,
            response_fn=response_fn,
            prompts=prompts,
            rng=rollout_rng,
            score_fn=score,
            max_new_tokens=rollout_config.max_new_tokens,
            eos_id=eos_id,
            temperature=rollout_config.temperature,
        )
        data = {
            "tokens": rollout.tokens,
            "input_mask": rollout.input_mask,
            "mask": rollout.response_mask,
            "old_logps": rollout.logps,
            "ref_logps": rollout.ref_logps,
            "advantages": group_baseline_advantages(rollout, config, group_size),
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
        groups = rollout.scores.reshape(-1, group_size)
        metrics = {
            **update_metrics,
            **rollout_metrics(rollout, gold_fn, inputs),
            "rollout/solved_groups": jnp.mean(jnp.any(groups > 0.5, axis=-1)),
            "rollout/group_std": jnp.mean(jnp.std(groups, axis=-1)),
        }
        return state, metrics

    return grpo_step
