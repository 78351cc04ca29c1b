"""PPO for language models (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022) as one
jitted iteration: rollout -> KL-penalised rewards -> GAE -> epochs of clipped minibatch updates
of the policy and its critic, with an optional pretraining term (PPO-ptx).

    step = make_ppo_step(policy=..., value_model=..., score_fn=..., tx=...,
                         kl_controller=kl_controller_from_config(c), config=c,
                         rollout_config=RolloutConfig(max_new_tokens=...), eos_id=...)
    state, metrics = step(state, prompt_batch, rng)

`state.params` is {'policy': ..., 'value': ...}, or {'policy': ...} with the critic a value head on
the policy (`value_model=None`); the reference policy is `state.ref_params` and the KL
controller's state `state.aux['kl']`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from alignax import logprobs, schema
from alignax.losses.ppo import ppo_loss
from alignax.models import Model
from alignax.rl import advantages as adv
from alignax.rl.common import minibatch_updates, rollout_metrics
from alignax.rl.kl_control import KLController, make_kl_controller
from alignax.rl.rollout import ResponseFn, RolloutConfig, actor_critic_response_fn, collect
from alignax.state import TrainState

# score_fn(state, tokens, input_mask, loss_mask, **inputs) -> [B], with `inputs` the prompt-batch
# entries the step was told to pass (`score_inputs`, e.g. a verifier's `answer_tokens`).
ScoreFn = Callable[..., jax.Array]
PTX_KEYS = ("ptx_tokens", "ptx_input_mask", "ptx_loss_mask")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Every hyperparameter of `make_ppo_step` (InstructGPT-style defaults scaled to the tiny
    task); `PPOConfig.from_config(config.ppo)` reads an experiment's `ppo` section. What is
    sampled (length, temperature) is the `rollout` section's (`RolloutConfig`)."""

    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    epochs: int = 2
    num_minibatches: int = 2
    clip_eps: float = 0.2
    value_clip_eps: float = 0.2
    value_coef: float = 0.1
    entropy_coef: float = 0.0
    ptx_coef: float = 0.0  # > 0: the batch carries a pretraining batch (`PTX_KEYS`), PPO-ptx
    missing_eos_penalty: float = 0.0  # shaping, off by default: see `describe_reward`
    kl_estimator: str = "k1"
    kl_control: str = "adaptive"  # or "fixed"
    kl_coef: float = 0.05  # initial beta
    kl_target: float = 2.0  # nats per sequence (adaptive only)
    kl_horizon: int = 5000  # samples (adaptive only)

    def __post_init__(self):
        schema.check_choice("ppo", "kl_estimator", self.kl_estimator, adv.KL_ESTIMATORS)
        schema.check_choice("ppo", "kl_control", self.kl_control, ("fixed", "adaptive"))

    @classmethod
    def from_config(cls, config, prefix: str = "ppo") -> PPOConfig:
        return schema.frozen(cls, config, prefix)


def describe_reward(section) -> str:
    """One sentence for a report: what a PPO run (its `ppo` section) optimises besides the
    reward and the KL penalty. Shaping is off by default (`missing_eos_penalty = 0`, as in TRL):
    a study that turns it on gives PPO a term no other method gets, and its report says so."""
    penalty = section.missing_eos_penalty
    if not penalty:
        return "PPO's reward: the score minus the KL penalty, no other shaping."
    return (
        f"PPO's reward is shaped: a response without EOS loses {penalty:g} "
        "(`ppo.missing_eos_penalty`), a term no other method gets."
    )


def default_ppo_config():
    """The `ppo` ConfigDict section: every `PPOConfig` field at its default."""
    return schema.section(PPOConfig())


def kl_controller_from_config(config: PPOConfig) -> KLController:
    """The fixed or adaptive controller that `kl_control`, `kl_coef`, `kl_target` and
    `kl_horizon` describe (a `PPOConfig` or the `ppo` ConfigDict section)."""
    return make_kl_controller(
        config.kl_control,
        kl_coef=config.kl_coef,
        target=config.kl_target,
        horizon=config.kl_horizon,
    )


def ppo_objective(policy: Model, response_fn: ResponseFn, config: PPOConfig):
    """`loss_fn(params, minibatch) -> (loss, metrics)` of one PPO minibatch: clipped policy and
    value losses, entropy bonus and, with `ptx_coef > 0`, the pretraining NLL."""

    def loss_fn(params, mb):
        prompt_len = mb["tokens"].shape[1] - mb["mask"].shape[1]
        out = response_fn(params, mb["tokens"], mb["input_mask"], prompt_len)
        ptx_nll = None
        if config.ptx_coef > 0:
            logits = policy.apply(
                params["policy"], mb["ptx_tokens"], mb["ptx_input_mask"], heads=("lm",)
            )["logits"]
            ptx_nll = -logprobs.masked_mean(
                logprobs.token_logps(logits, mb["ptx_tokens"]), mb["ptx_loss_mask"]
            )
        loss_B, metrics = ppo_loss(
            out["logps"],
            mb["old_logps"],
            mb["advantages"],
            out["values"],
            mb["old_values"],
            mb["returns"],
            mb["mask"],
            entropy_BxT=out["entropy"],
            ptx_nll=ptx_nll,
            clip_eps=config.clip_eps,
            value_clip_eps=config.value_clip_eps,
            value_coef=config.value_coef,
            entropy_coef=config.entropy_coef,
            ptx_coef=config.ptx_coef,
        )
        return jnp.mean(loss_B), jax.tree.map(jnp.mean, metrics)

    return loss_fn


def make_ppo_step(
    *,
    policy: Model,
    value_model: Model | None,
    score_fn: ScoreFn,
    tx: optax.GradientTransformation,
    kl_controller: KLController,
    config: PPOConfig,
    rollout_config: RolloutConfig,
    eos_id: int,
    gold_fn: Callable | None = None,
    score_inputs: tuple[str, ...] = (),
    policy_view: Callable | None = None,
):
    """The PPO iteration `step(state, batch, rng) -> (state, metrics)`: one sample per prompt
    of the batch, `rollout_config.max_new_tokens` tokens at `rollout_config.temperature`.

    `value_model=None` means a value head on the policy (built with heads ('lm', 'value')).
    `score_fn` scores the responses; `gold_fn(tokens, input_mask, loss_mask, **inputs)`, when
    given, is only logged (`gold/mean`). Both get the batch entries named in `score_inputs`.
    `policy_view(trainable, ref_params) -> policy params`: the policy the rollout samples and the
    loss differentiates, from the trained `state.params['policy']` (LoRA: the reference, which
    is the base, with the adapters merged in; `alignax.models.lora.merge`). Default: the
    trained params themselves.
    """
    if not isinstance(config, PPOConfig):
        raise TypeError(f"config must be a PPOConfig (PPOConfig.from_config), got {type(config)}")
    if rollout_config.group_size != 1:
        raise ValueError(
            f"rollout.group_size={rollout_config.group_size}: PPO samples each prompt once (its "
            "critic is the baseline); group sampling is GRPO / RLOO (configs/grpo.py)"
        )
    response_fn = actor_critic_response_fn(policy, value_model)
    loss_fn = ppo_objective(policy, response_fn, config)

    def ppo_step(state: TrainState, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        rollout_rng, update_rng = jax.random.split(rng)
        inputs = {k: batch[k] for k in score_inputs}

        def score(*sequences):
            return score_fn(state, *sequences, **inputs)

        def viewed(params):
            if policy_view is None:
                return params
            return {**params, "policy": policy_view(params["policy"], state.ref_params)}

        params = viewed(state.params)
        rollout = collect(
            policy=policy,
            params=params,
            policy_params=params["policy"],
            ref_params=state.ref_params,
            response_fn=response_fn,
            prompts=batch,
            rng=rollout_rng,
            score_fn=score,
            max_new_tokens=rollout_config.max_new_tokens,
            eos_id=eos_id,
            temperature=rollout_config.temperature,
        )
        kl_coef = state.aux["kl"].kl_coef
        rewards, reward_metrics = adv.kl_penalized_rewards(
            rollout.scores,
            rollout.logps,
            rollout.ref_logps,
            rollout.response_mask,
            kl_coef=kl_coef,
            estimator=config.kl_estimator,
            ended_with_eos_B=rollout.ended_with_eos,
            missing_eos_penalty=config.missing_eos_penalty,
        )
        advantages, returns = adv.gae(
            rewards, rollout.values, rollout.response_mask, gamma=config.gamma, lam=config.lam
        )
        if config.whiten_advantages:
            advantages = adv.whiten(advantages, rollout.response_mask)
        data = {
            "tokens": rollout.tokens,
            "input_mask": rollout.input_mask,
            "mask": rollout.response_mask,
            "old_logps": rollout.logps,
            "old_values": rollout.values,
            "advantages": advantages,
            "returns": returns,
        }
        if config.ptx_coef > 0:
            data.update({k: batch[k] for k in PTX_KEYS})
        state, update_metrics = minibatch_updates(
            state,
            data,
            loss_fn if policy_view is None else lambda p, mb: loss_fn(viewed(p), mb),
            tx,
            epochs=config.epochs,
            num_minibatches=config.num_minibatches,
            rng=update_rng,
        )
        observed_kl = jnp.mean(reward_metrics["kl"])
        kl_state = kl_controller.update(state.aux["kl"], observed_kl, rollout.tokens.shape[0])
        state = state.replace(aux={**state.aux, "kl": kl_state})
        metrics = {
            **update_metrics,
            **rollout_metrics(rollout, gold_fn, inputs),
            "kl/coef": kl_coef,
            "kl/penalty": kl_coef * observed_kl,
            "rewards/total": jnp.mean(reward_metrics["rewards/total"]),
            "value/mean": jnp.sum(rollout.values) / jnp.maximum(jnp.sum(rollout.response_mask), 1),
        }
        return state, metrics

    return ppo_step
