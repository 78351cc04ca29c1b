"""Online RL iterations as single jitted steps: rollout -> score -> advantages -> epochs of
minibatch updates under `lax.scan`, all on device.

    ppo_step  = make_ppo_step(policy=..., value_model=..., score_fn=..., tx=..., ...)
    grpo_step = make_grpo_step(policy=..., score_fn=..., tx=..., ...)
    state, metrics = step(state, prompt_batch, rng)     # the same shape as every train step

So the RL loops run in the shared host loop (`alignax.training.train_loop`) like supervised ones.
Trainable params: PPO trains {'policy': ..., 'value': ...} with one optimizer (or {'policy': ...}
with a value head on the policy); GRPO/RLOO train the policy alone. The reference policy lives
in `state.ref_params`, a reward model in `state.reward_params`, and the KL controller state in
`state.aux['kl']`.

`score_fn(state, tokens, input_mask, loss_mask) -> [B]` scores full responses (a reward model,
the task's gold reward or a verifier); `gold_fn(tokens, input_mask, loss_mask) -> [B]`, when
given, is only logged (`gold/mean`), which is how proxy-vs-gold over-optimisation is watched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from alignax import advantages as adv
from alignax import logprobs
from alignax.kl_control import KLController, make_kl_controller
from alignax.losses import grpo as group_losses
from alignax.losses.ppo import ppo_loss
from alignax.models import Model
from alignax.rollout import collect, full_loss_mask, response_outputs
from alignax.state import TrainState

# score_fn(state, tokens, input_mask, loss_mask) -> [B]; gold_fn(tokens, input_mask, loss_mask).
ScoreFn = Callable[[TrainState, jax.Array, jax.Array, jax.Array], jax.Array]


def default_ppo_config() -> ml_collections.ConfigDict:
    """Every key `make_ppo_step` reads (InstructGPT-style defaults scaled to the tiny task)."""
    return ml_collections.ConfigDict(
        {
            "max_new_tokens": 24,
            "temperature": 1.0,
            "gamma": 1.0,
            "lam": 0.95,
            "whiten_advantages": True,
            "epochs": 2,
            "num_minibatches": 2,
            "clip_eps": 0.2,
            "value_clip_eps": 0.2,
            "value_coef": 0.1,
            "entropy_coef": 0.0,
            "ptx_coef": 0.0,
            "missing_eos_penalty": 1.0,
            "kl_estimator": "k1",
            "kl_control": "adaptive",  # or "fixed"
            "kl_coef": 0.05,  # initial beta
            "kl_target": 2.0,  # nats per sequence (adaptive only)
            "kl_horizon": 5000,  # samples (adaptive only)
        }
    )


def default_grpo_config() -> ml_collections.ConfigDict:
    """Every key `make_grpo_step` reads."""
    return ml_collections.ConfigDict(
        {
            "group_size": 8,
            # "grpo" (group mean, scaled by `scale_rewards`), "dr_grpo" (unscaled), "rloo"
            # (sequence-level REINFORCE with a leave-one-out baseline, KL in the reward),
            # "rloo_token" (leave-one-out baseline with the per-token `loss` below)
            "baseline": "grpo",
            "scale_rewards": "group",  # "batch" | "none"; read by baseline "grpo" only
            "loss": "grpo",  # "gspo" | "cispo" | "sapo"; every baseline but "rloo"
            "kl_importance_weighted": False,  # k3 times the current/old ratio (TRL 1.16)
            # logged kl / clip fractions: per sequence then batch, or "token_mean" (TRL's logging)
            "metric_aggregation": "sequence_mean",
            "max_new_tokens": 8,
            "temperature": 1.0,
            "epochs": 1,
            "num_minibatches": 2,
            "beta": 0.04,
            "clip_eps_low": 0.2,
            "clip_eps_high": 0.28,
            "aggregation": "sequence_mean",  # "token_mean" (DAPO), "max_length" (Dr. GRPO)
        }
    )


def kl_controller_from_config(ppo_config) -> KLController:
    """The fixed or adaptive controller that `config.ppo.kl_*` describes."""
    return make_kl_controller(
        ppo_config.kl_control,
        kl_coef=ppo_config.kl_coef,
        target=ppo_config.kl_target,
        horizon=ppo_config.kl_horizon,
    )


def _optimize(params, opt_state, data, loss_fn, tx, *, epochs, num_minibatches, rng):
    """`epochs` passes over `data` (dict of [B, ...]) in shuffled minibatches, one optimizer
    update per minibatch, as nested `lax.scan`s. Returns params, opt_state and the mean metrics
    of the last epoch."""
    batch_size = jax.tree.leaves(data)[0].shape[0]
    if batch_size % num_minibatches:
        raise ValueError(
            f"rollout batch {batch_size} is not divisible by num_minibatches={num_minibatches}"
        )
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch(carry, indices):
        params, opt_state = carry
        (loss, metrics), grads = grad_fn(params, jax.tree.map(lambda x: x[indices], data))
        updates, opt_state = tx.update(grads, opt_state, params)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
        return (optax.apply_updates(params, updates), opt_state), metrics

    def epoch(carry, key):
        order = jax.random.permutation(key, batch_size).reshape(num_minibatches, -1)
        return jax.lax.scan(minibatch, carry, order)

    (params, opt_state), metrics = jax.lax.scan(
        epoch, (params, opt_state), jax.random.split(rng, epochs)
    )
    return params, opt_state, jax.tree.map(lambda m: jnp.mean(m[-1]), metrics)


def _rollout_metrics(rollout, gold_fn):
    mask = rollout.response_mask
    metrics = {
        "rollout/response_length": jnp.mean(jnp.sum(mask, axis=-1)),
        "rollout/ended_with_eos": jnp.mean(rollout.ended_with_eos.astype(jnp.float32)),
        "rollout/entropy": jnp.sum(rollout.entropy) / jnp.maximum(jnp.sum(mask), 1.0),
        "proxy/mean": jnp.mean(rollout.scores),
        "kl/sequence": jnp.mean(jnp.sum(rollout.logps - rollout.ref_logps, axis=-1)),
    }
    if gold_fn is not None:
        metrics["gold/mean"] = jnp.mean(
            gold_fn(rollout.tokens, rollout.input_mask, full_loss_mask(rollout))
        )
    return metrics


def make_ppo_step(
    *,
    policy: Model,
    value_model: Model | None,
    score_fn: ScoreFn,
    tx: optax.GradientTransformation,
    kl_controller: KLController,
    config,
    eos_id: int,
    gold_fn: Callable | None = None,
):
    """PPO for language models (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022).

    Reads `config.ppo.{max_new_tokens, temperature, gamma, lam, whiten_advantages, epochs,
    num_minibatches, clip_eps, value_clip_eps, value_coef, entropy_coef, ptx_coef,
    missing_eos_penalty, kl_estimator}`. With ptx_coef > 0 the batch also carries a pretraining
    batch (`ptx_tokens`, `ptx_input_mask`, `ptx_loss_mask`) whose NLL is added (PPO-ptx).

    `value_model=None` means a value head on the policy (built with heads ('lm', 'value')):
    then `state.params` is {'policy': ...} and one forward pass gives log-probs and values.
    """
    p = config.ppo
    shared_value = value_model is None
    if shared_value and "value" not in policy.heads:
        raise ValueError(f"value_model=None needs a policy with a value head, got {policy.heads}")

    def ppo_step(state: TrainState, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        rollout_rng, update_rng = jax.random.split(rng)
        prompt_len = batch["prompt_tokens"].shape[1]

        def score(*sequences):
            return score_fn(state, *sequences)

        rollout = collect(
            policy=policy,
            policy_params=state.params["policy"],
            ref_params=state.ref_params,
            prompts=batch,
            rng=rollout_rng,
            score_fn=score,
            value_model=policy if shared_value else value_model,
            value_params=state.params["policy" if shared_value else "value"],
            max_new_tokens=p.max_new_tokens,
            eos_id=eos_id,
            temperature=p.temperature,
        )
        kl_coef = state.aux["kl"].kl_coef
        rewards, reward_metrics = adv.kl_penalized_rewards(
            rollout.scores,
            rollout.logps,
            rollout.ref_logps,
            rollout.response_mask,
            kl_coef=kl_coef,
            estimator=p.kl_estimator,
            ended_with_eos_B=rollout.ended_with_eos,
            missing_eos_penalty=p.missing_eos_penalty,
        )
        advantages, returns = adv.gae(
            rewards, rollout.values, rollout.response_mask, gamma=p.gamma, lam=p.lam
        )
        if p.whiten_advantages:
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
        if p.ptx_coef > 0:
            data.update({k: batch[k] for k in ("ptx_tokens", "ptx_input_mask", "ptx_loss_mask")})

        def loss_fn(params, mb):
            sequences = (mb["tokens"], mb["input_mask"], prompt_len)
            if shared_value:
                out = response_outputs(policy, params["policy"], *sequences, heads=("lm", "value"))
                values = out["values"]
            else:
                out = response_outputs(policy, params["policy"], *sequences)
                values = response_outputs(
                    value_model, params["value"], *sequences, heads=("value",)
                )["values"]
            logps, entropy = out["logps"], out["entropy"]
            ptx_nll = None
            if p.ptx_coef > 0:
                logits = policy.apply(
                    params["policy"], mb["ptx_tokens"], mb["ptx_input_mask"], heads=("lm",)
                )["logits"]
                ptx_nll = -logprobs.masked_mean(
                    logprobs.token_logps(logits, mb["ptx_tokens"]), mb["ptx_loss_mask"]
                )
            loss_B, metrics = ppo_loss(
                logps,
                mb["old_logps"],
                mb["advantages"],
                values,
                mb["old_values"],
                mb["returns"],
                mb["mask"],
                entropy_BxT=entropy,
                ptx_nll=ptx_nll,
                clip_eps=p.clip_eps,
                value_clip_eps=p.value_clip_eps,
                value_coef=p.value_coef,
                entropy_coef=p.entropy_coef,
                ptx_coef=p.ptx_coef,
            )
            return jnp.mean(loss_B), jax.tree.map(jnp.mean, metrics)

        params, opt_state, update_metrics = _optimize(
            state.params,
            state.opt_state,
            data,
            loss_fn,
            tx,
            epochs=p.epochs,
            num_minibatches=p.num_minibatches,
            rng=update_rng,
        )
        observed_kl = jnp.mean(reward_metrics["kl"])
        kl_state = kl_controller.update(state.aux["kl"], observed_kl, rollout.tokens.shape[0])
        state = state.replace(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            aux={**state.aux, "kl": kl_state},
        )
        metrics = {
            **update_metrics,
            **_rollout_metrics(rollout, gold_fn),
            "kl/coef": kl_coef,
            "kl/penalty": kl_coef * observed_kl,
            "rewards/total": jnp.mean(reward_metrics["rewards/total"]),
            "value/mean": jnp.sum(rollout.values) / jnp.maximum(jnp.sum(rollout.response_mask), 1),
        }
        return state, metrics

    return ppo_step


# grpo.loss -> builder of `fn(logps, old_logps, ref_logps, advantages, mask) -> (loss_B, metrics)`
# from config.grpo (GSPO keeps its sequence aggregation; SAPO has no clip range).
GROUP_LOSSES = {
    "grpo": lambda g: functools.partial(
        group_losses.grpo_loss,
        beta=g.beta,
        clip_eps_low=g.clip_eps_low,
        clip_eps_high=g.clip_eps_high,
        aggregation=g.aggregation,
        max_length=g.max_new_tokens,
        kl_importance_weighted=g.kl_importance_weighted,
        metric_aggregation=g.metric_aggregation,
    ),
    "gspo": lambda g: functools.partial(
        group_losses.gspo_loss,
        beta=g.beta,
        clip_eps_low=g.clip_eps_low,
        clip_eps_high=g.clip_eps_high,
        kl_importance_weighted=g.kl_importance_weighted,
        metric_aggregation=g.metric_aggregation,
    ),
    "cispo": lambda g: functools.partial(
        group_losses.cispo_loss,
        beta=g.beta,
        clip_eps_low=None,
        clip_eps_high=g.clip_eps_high,
        aggregation=g.aggregation,
        max_length=g.max_new_tokens,
        kl_importance_weighted=g.kl_importance_weighted,
        metric_aggregation=g.metric_aggregation,
    ),
    "sapo": lambda g: functools.partial(
        group_losses.sapo_loss,
        beta=g.beta,
        aggregation=g.aggregation,
        max_length=g.max_new_tokens,
        kl_importance_weighted=g.kl_importance_weighted,
        metric_aggregation=g.metric_aggregation,
    ),
}


def make_grpo_step(
    *,
    policy: Model,
    score_fn: ScoreFn,
    tx: optax.GradientTransformation,
    config,
    eos_id: int,
    gold_fn: Callable | None = None,
    score_inputs: tuple[str, ...] = (),
):
    """GRPO (Shao et al. 2024) and RLOO (Ahmadian et al. 2024): G samples per prompt, the group
    as baseline, no value model.

    Reads `config.grpo.{group_size, baseline ('grpo' | 'dr_grpo' | 'rloo' | 'rloo_token'),
    scale_rewards, loss ('grpo' | 'gspo' | 'cispo' | 'sapo'), kl_importance_weighted,
    metric_aggregation, max_new_tokens, temperature, epochs, num_minibatches, beta,
    clip_eps_low, clip_eps_high, aggregation}`.
    `score_inputs` names batch entries (e.g. a verifier's `answer_tokens`) passed to `score_fn`
    after the sequences, repeated like the prompts.
    """
    g = config.grpo
    baselines, group_loss_names = ("grpo", "dr_grpo", "rloo", "rloo_token"), tuple(GROUP_LOSSES)
    if g.baseline not in baselines:
        raise ValueError(f"grpo.baseline={g.baseline!r} is not one of {baselines}")
    if g.loss not in group_loss_names:
        raise ValueError(f"grpo.loss={g.loss!r} is not one of {group_loss_names}")
    if g.baseline == "rloo" and g.loss != "grpo":
        raise ValueError(
            f"grpo.baseline='rloo' is sequence-level REINFORCE; grpo.loss={g.loss!r} applies to "
            "the other baselines (use baseline='rloo_token' for a leave-one-out baseline with it)"
        )

    group_loss = GROUP_LOSSES[g.loss](g)

    def grpo_step(state: TrainState, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        rollout_rng, update_rng = jax.random.split(rng)
        prompts = jax.tree.map(lambda x: jnp.repeat(x, g.group_size, axis=0), batch)
        prompt_len = prompts["prompt_tokens"].shape[1]

        def score(*sequences):
            return score_fn(state, *sequences, *(prompts[k] for k in score_inputs))

        rollout = collect(
            policy=policy,
            policy_params=state.params,
            ref_params=state.ref_params,
            prompts=prompts,
            rng=rollout_rng,
            score_fn=score,
            max_new_tokens=g.max_new_tokens,
            eos_id=eos_id,
            temperature=g.temperature,
        )
        if g.baseline == "rloo":
            # Ahmadian et al. 2024: the KL penalty is in the sequence reward (k1, summed).
            kl_B = jnp.sum((rollout.logps - rollout.ref_logps) * rollout.response_mask, axis=-1)
            advantages = adv.rloo_advantages(
                rollout.scores - g.beta * kl_B, group_size=g.group_size
            )
        elif g.baseline == "rloo_token":
            advantages = adv.rloo_advantages(rollout.scores, group_size=g.group_size)
        else:
            advantages = group_losses.grpo_advantages(
                rollout.scores,
                group_size=g.group_size,
                scale_rewards=g.scale_rewards if g.baseline == "grpo" else "none",
            )
        data = {
            "tokens": rollout.tokens,
            "input_mask": rollout.input_mask,
            "mask": rollout.response_mask,
            "old_logps": rollout.logps,
            "ref_logps": rollout.ref_logps,
            "advantages": advantages,
        }

        def loss_fn(params, mb):
            logps = response_outputs(policy, params, mb["tokens"], mb["input_mask"], prompt_len)[
                "logps"
            ]
            if g.baseline == "rloo":
                loss_B, metrics = group_losses.rloo_loss(
                    logps, mb["old_logps"], mb["advantages"], mb["mask"], clip_eps=g.clip_eps_low
                )
            else:
                loss_B, metrics = group_loss(
                    logps, mb["old_logps"], mb["ref_logps"], mb["advantages"], mb["mask"]
                )
            return jnp.mean(loss_B), jax.tree.map(jnp.mean, metrics)

        params, opt_state, update_metrics = _optimize(
            state.params,
            state.opt_state,
            data,
            loss_fn,
            tx,
            epochs=g.epochs,
            num_minibatches=g.num_minibatches,
            rng=update_rng,
        )
        state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        groups = rollout.scores.reshape(-1, g.group_size)
        metrics = {
            **update_metrics,
            **_rollout_metrics(rollout, gold_fn),
            "rollout/solved_groups": jnp.mean(jnp.any(groups > 0.5, axis=-1)),
            "rollout/group_std": jnp.mean(jnp.std(groups, axis=-1)),
        }
        return state, metrics

    return grpo_step
