"""RLHF with PPO: KV-cache rollouts, a reward model (or the task's own reward), a per-token KL
penalty to the SFT policy, GAE, clipped policy and value losses, optional PPO-ptx.

One train step is one PPO iteration (rollout, scoring, advantages, epochs of minibatch updates),
jitted whole. The value model starts from the reward model's backbone or the policy's
(`rewards.value_init`), or is a value head on the policy itself ('shared'). Reward-model scores are
normalised to mean 0, std 1 on the initial policy's samples (with `rewards.length_debias`, after
their least-squares slope on response length is removed: `reward_scaling`); an ensemble's members
are standardised there each before they are combined (`standardize_members`). Logs the proxy reward,
the gold reward, KL and its coefficient, entropy, clip fractions, value error, response length and
sample texts; with `judge_drift.track`, the reward model's accuracy on pairs of the policy's
responses (or, `judge_drift.pairs='reference'`, of its response and the task's verified one) as gold
orders them, and an alarm when it falls (alignax/feedback/drift.py). A run on the gold reward can
watch a judge it does not optimise (`rewards.reward_model_from` with `judge_drift.track`): the
control that calibrates the alarm.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from alignax import feedback, rl
from alignax.analysis.policy_eval import evaluate_policy, summarize, task_reward
from alignax.analysis.stats import least_squares_slope
from alignax.experiment import check_model_fits_task, initial_params
from alignax.losses.reward import ensemble_rewards, normalize_rewards, reward_normalization
from alignax.models import build_model
from alignax.stages import load_stage_model
from alignax.tasks import require, stage_task
from alignax.tasks.base import device_prompts
from alignax.workflows.runner import Context, Stage, StageKind, run_stage

VALUE_INITS = ("reward_model", "policy", "shared")


def build_reward(config, mesh):
    """(reward_fn(params, tokens, input_mask) -> [B], params, reward model) of the reward model
    in `config.rewards`, or Nones when there is none: the reward model PPO optimises
    (source 'model') or, with source 'gold' and `judge_drift.track`, the judge it only watches
    (a control run). The reward model is built from its own run's config (its size need not be
    the policy's). An ensemble reward model (members stacked on axis 0) has params
    {'members', 'member_gain', 'member_bias'}: each member's scores are standardised
    (`standardize_members` fits the gain and bias; until then 1 and 0), then combined by
    `rewards.ensemble_method` (mean, min, mean_minus_std, mean_minus_var)."""
    r = config.rewards
    if r.source not in ("model", "gold"):
        raise ValueError(f"rewards.source={r.source!r} is not one of ('model', 'gold')")
    if r.source == "gold" and not r.reward_model_from:
        return None, None, None
    if not r.reward_model_from:
        raise ValueError(
            "rewards.source='model' needs rewards.reward_model_from (the workdir "
            "of a reward_model run)"
        )
    model, params = load_stage_model(
        r.reward_model_from, heads=("reward",), mesh=mesh, ensemble_size=r.ensemble_size
    )
    if r.ensemble_size == 1:
        return (lambda p, t, m: model.apply(p, t, m)["rewards"]), params, model

    def reward_fn(p, tokens, input_mask):
        members_ExB = member_rewards(model, p["members"], tokens, input_mask)
        standardized_ExB = normalize_rewards(
            members_ExB, p["member_gain"][:, None], p["member_bias"][:, None]
        )
        return ensemble_rewards(
            standardized_ExB, method=r.ensemble_method, uncertainty_penalty=r.uncertainty_penalty
        )

    ones = jnp.ones(r.ensemble_size)
    params = {"members": params, "member_gain": ones, "member_bias": jnp.zeros_like(ones)}
    return reward_fn, params, model


def member_rewards(model, members, tokens, input_mask) -> jax.Array:
    """[E, B]: the score of every member of a stacked ensemble."""
    return jax.vmap(lambda q: model.apply(q, tokens, input_mask)["rewards"])(members)


def standardize_members(model, params: dict, evaluate) -> dict:
    """An ensemble's params with each member's gain and bias fitted to standardise its scores
    of the initial policy's samples (`evaluate(proxy_fn)`: `evaluate_policy` on them), so
    the members' arbitrary offsets and scales do not decide their minimum or variance (Coste
    et al. 2023 normalise each member alike)."""
    scores_ExN = evaluate(
        functools.partial(jax.jit(member_rewards, static_argnums=0), model, params["members"])
    )["proxy"]
    gain_E, bias_E = jax.vmap(reward_normalization)(jnp.asarray(scores_ExN))
    return params | {"member_gain": gain_E, "member_bias": bias_E}


def reward_scaling(scores, lengths, length_debias: bool) -> dict:
    """How PPO turns reward-model scores into rewards, fitted on the initial policy's samples
    (`scores` and their response `lengths` in tokens): `reward_gain` and `reward_bias` that
    normalise them to mean 0 and std 1; with `length_debias`, `reward_length_slope`, their
    least-squares slope on length, removed before normalising (score - slope x length)."""
    out = {}
    if length_debias:
        slope = least_squares_slope(scores, lengths)
        scores = np.asarray(scores) - slope * np.asarray(lengths)
        out["reward_length_slope"] = jnp.float32(slope)
    gain, bias = reward_normalization(scores)
    return out | {"reward_gain": gain, "reward_bias": bias}


def check_config(config, task) -> None:
    """The errors of PPO's own sections, before anything is built."""
    if not config.init_from:
        raise ValueError("ppo needs config.init_from: the workdir of the SFT policy")
    if config.reference_from and config.lora.rank > 0:
        raise ValueError(
            f"reference_from={config.reference_from!r} with lora.rank={config.lora.rank}: a LoRA "
            "run's reference is its base, the policy of init_from"
        )
    value_init = config.rewards.value_init
    if value_init not in VALUE_INITS:
        raise ValueError(f"rewards.value_init={value_init!r} is not one of {VALUE_INITS}")
    if config.rewards.ensemble_size > 1 and value_init == "reward_model":
        raise ValueError(
            "rewards.value_init='reward_model' needs a single reward model; use "
            "'policy' or 'shared' with rewards.ensemble_size > 1"
        )
    if config.rewards.length_debias and config.rewards.source != "model":
        raise ValueError(
            f"rewards.length_debias=True corrects a reward model's scores; with "
            f"rewards.source={config.rewards.source!r} there are none to correct"
        )
    if config.rewards.source == "gold" or config.judge_drift.track:
        require(
            task,
            "gold_reward",
            by=f"rewards.source={config.rewards.source!r}"
            if config.rewards.source == "gold"
            else "judge_drift.track=True",
            hint="Declare a verifier of the data file (data.verifier)",
        )
    check_judge_drift_config(config.judge_drift, config.rewards, task)


def check_judge_drift_config(drift, rewards, task) -> None:
    """The `judge_drift` section's errors (with the `rewards` section it reads), before anything
    is built. A run on the gold reward may watch a judge it does not optimise (a control): its
    `rewards.reward_model_from` is then read only by the judge check."""
    if rewards.source == "gold" and rewards.reward_model_from and not drift.track:
        raise ValueError(
            f"rewards.reward_model_from={rewards.reward_model_from!r} with rewards.source='gold' "
            "is read only to watch the judge: set judge_drift.track=True, or clear it"
        )
    if not drift.track:
        return
    if not rewards.reward_model_from:
        raise ValueError(
            "judge_drift.track=True needs a judge: rewards.reward_model_from (optimised with "
            "rewards.source='model', watched only with 'gold')"
        )
    if drift.pairs not in ("samples", "reference"):
        raise ValueError(
            f"judge_drift.pairs={drift.pairs!r} is not one of ('samples', 'reference')"
        )
    if drift.pairs == "reference":
        require(
            task,
            "verified_references",
            by="judge_drift.pairs='reference'",
            hint="Use judge_drift.pairs='samples'",
        )


def build(config, ctx: Context) -> Stage:
    task = stage_task(config)
    check_model_fits_task(config.model, task)
    check_config(config, task)
    mesh, rngs = ctx.mesh, ctx.rngs
    value_init = config.rewards.value_init
    shared_value = value_init == "shared"  # a value head on the policy itself
    policy = build_model(config.model, heads=("lm", "value") if shared_value else ("lm",))
    policy_params = initial_params(policy, config, mesh, rngs["init"])
    reference = policy_params
    if config.reference_from:
        reference = initial_params(policy, config, mesh, rngs["init"], source=config.reference_from)
    reward_fn, reward_params, reward_model = build_reward(config, mesh)
    params = {"policy": policy_params}
    value_model = None
    if not shared_value:
        # A value model started from the reward model has the reward model's size.
        from_reward_model = value_init == "reward_model"
        value_config = reward_model.config if from_reward_model else config.model
        value_model = build_model(value_config, heads=("value",))
        source = config.rewards.reward_model_from if from_reward_model else None
        params["value"] = initial_params(value_model, config, mesh, rngs["init"], source=source)

    rollout_config = rl.RolloutConfig.from_config(config.rollout)
    prompts = task.prompt_dataset(rollout_config.num_prompts, seed=config.seed, split="train")
    eval_prompts = task.prompt_dataset(config.eval.num_prompts, seed=config.seed + 1, split="eval")
    prompts, eval_prompts = device_prompts(task, prompts), device_prompts(task, eval_prompts)
    max_new_tokens = rollout_config.max_new_tokens

    def gold_fn(tokens, input_mask, loss_mask, **inputs):
        return task.reward(tokens, loss_mask, **inputs)

    has_gold = "gold_reward" in task.capabilities  # a data file's needs a verifier

    aux_reward = {}
    if reward_fn is not None:
        # Normalised on the initial policy's samples to training prompts.
        normalization_prompts = {k: v[: config.eval.num_prompts] for k, v in prompts.items()}
        on_initial_samples = functools.partial(
            evaluate_policy,
            policy,
            policy_params,
            task,
            normalization_prompts,
            rngs["normalization"],
            max_new_tokens=max_new_tokens,
        )
        if config.rewards.ensemble_size > 1:
            reward_params = standardize_members(
                reward_model, reward_params, lambda fn: on_initial_samples(proxy_fn=fn)
            )
        raw = on_initial_samples(proxy_fn=functools.partial(jax.jit(reward_fn), reward_params))
        aux_reward = reward_scaling(raw["proxy"], raw["length"], config.rewards.length_debias)

    if config.rewards.source == "gold":  # a reward model here is a watched judge only

        def score_fn(state, tokens, input_mask, loss_mask, **inputs):
            return gold_fn(tokens, input_mask, loss_mask, **inputs)
    else:

        def score_fn(state, tokens, input_mask, loss_mask, **inputs):
            del inputs  # a reward model reads the sequence alone
            rewards = reward_fn(state.reward_params, tokens, input_mask)
            if config.rewards.length_debias:
                rewards -= state.aux["reward_length_slope"] * loss_mask.sum(-1)
            return normalize_rewards(rewards, state.aux["reward_gain"], state.aux["reward_bias"])

    ppo_config = rl.PPOConfig.from_config(config.ppo)
    controller = rl.kl_controller_from_config(ppo_config)
    data = dict(prompts)
    if config.ppo.ptx_coef > 0:
        # PPO-ptx: one pretraining-distribution text per prompt, from the training split.
        ptx = task.pretraining_dataset(
            rollout_config.num_prompts, seed=config.seed + 3, split="train"
        )
        data.update({f"ptx_{k}": ptx[k] for k in ("tokens", "input_mask", "loss_mask")})

    def make_step(tx, view):
        return rl.make_ppo_step(
            policy=policy,
            value_model=value_model,
            score_fn=score_fn,
            tx=tx,
            kl_controller=controller,
            config=ppo_config,
            rollout_config=rollout_config,
            eos_id=task.eos_id,
            gold_fn=gold_fn if has_gold else None,
            score_inputs=task.reward_inputs,
            policy_view=view,
        )

    # Compiled once: the reward model's params and normalisation are arguments, not constants.
    normalized_proxy = jax.jit(
        lambda params, gain, bias, t, m: normalize_rewards(reward_fn(params, t, m), gain, bias)
    )

    def proxy_fn(state):
        if reward_fn is None:
            return None
        return functools.partial(
            normalized_proxy,
            state.reward_params,
            state.aux["reward_gain"],
            state.aux["reward_bias"],
        )

    judge = JudgeCheck(config, task, policy, eval_prompts, rngs["eval"], proxy_fn, ctx.workdir)

    def evaluate(state, params):
        result = evaluate_policy(
            policy,
            params["policy"],
            task,
            eval_prompts,
            rngs["eval"],
            max_new_tokens=max_new_tokens,
            ref_params=state.ref_params,
            proxy_fn=proxy_fn(state),
        )
        if config.rewards.length_debias:  # the score PPO optimises: its length slope removed
            slope = state.aux["reward_gain"] * state.aux["reward_length_slope"]
            result["proxy"] = result["proxy"] - np.asarray(slope) * result["length"]
        metrics = {**summarize(result), "texts": result["texts"]}
        if judge.alarm is not None:
            metrics.update(judge.check(state, params["policy"], result))
        return metrics

    def summarize_run(final, initial, state):
        summary = {
            "steps": int(state.step),
            "proxy_reward": final["proxy"] if "proxy" in final else final["gold"],
            "kl_to_sft": final["kl"],
            "response_length": final["length"],
            "ended_with_eos": final["ended_with_eos"],
            "kl_coef": float(np.asarray(state.aux["kl"].kl_coef)),
        }
        if has_gold:
            summary["gold_reward"] = final["gold"]
        if judge.alarm is not None:
            summary.update(
                judge_accuracy=final["judge_accuracy"], judge_drift_step=judge.alarm.fired_at
            )
        return summary

    return Stage(
        label="ppo",
        model=policy,
        params=params,
        train=data,
        unit="prompts",
        make_step=make_step,
        slots={
            "ref_params": reference,
            "reward_params": reward_params,
            "aux": {"kl": controller.init(), **aux_reward},
        },
        evaluate=evaluate,
        summarize=summarize_run,
        log_keys=("proxy/mean", "gold/mean", "kl/sequence", "kl/coef", "policy/clip_fraction"),
        policy_key="policy",
        lora_refusal=(
            "with rewards.value_init='shared' the value head on the policy would not train "
            "(LoRA adapts the projections only); use 'policy' or 'reward_model'"
            if shared_value
            else None
        ),
    )


class JudgeCheck:
    """With `judge_drift.track`: the reward model against the verifier (gold) on pairs of
    responses to the held-out prompts, and the alarm when its accuracy falls. The alarm's state
    is kept in the workdir, so a resumed run goes on from the checks made."""

    def __init__(self, config, task, policy, eval_prompts, rng, proxy_fn, workdir):
        self.drift = config.judge_drift
        self.task, self.policy, self.prompts, self.rng = task, policy, eval_prompts, rng
        self.proxy_fn = proxy_fn
        self.max_new_tokens = config.rollout.max_new_tokens
        self.alarm = None
        if self.drift.track:
            self.path = workdir / "judge_drift.json"
            self.alarm = (
                feedback.DriftAlarm.load(self.path)
                if self.path.exists()
                else feedback.DriftAlarm(self.drift.min_accuracy, self.drift.patience)
            )

    def check(self, state, policy_params, first: dict) -> dict:
        """Pairs of the evaluation's response to each held-out prompt and a second one of the
        policy (`judge_drift.pairs='samples'`) or the task's verified reference response
        ('reference'); warns when the alarm fires."""
        if self.drift.pairs == "samples":
            second = evaluate_policy(
                self.policy,
                policy_params,
                self.task,
                self.prompts,
                jax.random.fold_in(self.rng, 1),
                max_new_tokens=self.max_new_tokens,
                proxy_fn=self.proxy_fn(state),
            )
        else:
            second = self.score_references(state)
        accuracy, pairs = feedback.judge_accuracy(
            np.stack([first["proxy"], second["proxy"]], 1),
            np.stack([first["gold"], second["gold"]], 1),
        )
        step = int(state.step)
        fired = self.alarm.update(step, accuracy)
        self.alarm.save(self.path)
        if fired:
            against = (
                "gold" if self.drift.pairs == "samples" else "the verifier (against references)"
            )
            print(
                f"[ppo] judge drift alarm at step {step}: the reward model orders the policy's "
                f"response pairs as {against} does in {accuracy:.2f} of {pairs} pairs, below "
                f"{self.alarm.min_accuracy:g} at {self.alarm.patience} evaluation(s) in a row",
                flush=True,
            )
        return {"judge_accuracy": accuracy, "judge_pairs": float(pairs)}

    def score_references(self, state) -> dict:
        """Proxy and gold reward of the task's reference response to every held-out prompt."""
        task, prompts = self.task, self.prompts
        reference = task.reference_responses(prompts["answer_tokens"], self.max_new_tokens)
        response_mask = (reference != task.pad_id).astype(np.int32)
        tokens = np.concatenate([prompts["prompt_tokens"], reference], 1)
        input_mask = np.concatenate([prompts["prompt_mask"], response_mask], 1)
        loss_mask = np.concatenate([np.zeros_like(prompts["prompt_mask"]), response_mask], 1)
        return {
            "proxy": np.asarray(self.proxy_fn(state)(tokens, input_mask)),
            "gold": np.asarray(task_reward(task, tokens, loss_mask, prompts)),
        }


KIND = StageKind("ppo", build, rng_streams=("init", "normalization", "train", "eval"))


def run(config, workdir, *, evaluate_at_start: bool = False) -> dict:
    """PPO from `config.init_from`; with `evaluate_at_start`, a fresh run also evaluates the
    initial policy (written at step 0, so KL and reward curves start at the SFT policy)."""
    return run_stage(KIND, config, workdir, evaluate_at_start=evaluate_at_start)
