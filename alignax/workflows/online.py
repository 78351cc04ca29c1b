"""The online algorithms of `alignax.rl.algorithms` (the GRPO family with RLOO, XPO, Nash-MD)
with a task's own reward: the arithmetic task's exact-match verifier (RLVR), the review task's
gold reward, or the verifier a data file's config declares (`data.path`, `data.verifier`;
alignax/tasks/file.py).

GRPO family: G samples per prompt, the group's rewards as the baseline (no value model), KL to
the starting policy via k3. XPO: one policy and one reference response per prompt, the reward as
the judge of the pair, DPO on it plus an exploration term. Nash-MD: one policy response and one
from the geometric mixture of policy and reference per prompt, the reward's preference between
them as a policy-gradient signal, KL to the reference. Reports the mean task reward of greedy
and sampled responses to held-out prompts (on arithmetic: the share of problems answered
exactly), before and after training.
"""

from __future__ import annotations

import numpy as np

from alignax import rl
from alignax.analysis.policy_eval import evaluate_policy, task_reward
from alignax.experiment import check_model_fits_task, initial_params
from alignax.models import build_model
from alignax.tasks import require, stage_task
from alignax.tasks.base import device_prompts
from alignax.workflows.runner import Context, Stage, StageKind, run_stage


def build(config, ctx: Context) -> Stage:
    task = stage_task(config)
    check_model_fits_task(config.model, task)
    require(
        task,
        "gold_reward",
        by=f"algorithm={config.algorithm!r} (trained on the task's reward)",
        hint="Declare a verifier of the data file (data.verifier)",
    )
    rollout_config = rl.RolloutConfig.from_config(config.rollout)
    train = task.prompt_dataset(rollout_config.num_prompts, seed=config.seed, split="train")
    evaluation = task.prompt_dataset(config.eval.num_prompts, seed=config.seed + 1, split="eval")
    train, evaluation = device_prompts(task, train), device_prompts(task, evaluation)
    model = build_model(config.model, heads=("lm",))
    params = initial_params(model, config, ctx.mesh, ctx.rngs["init"])

    def score_fn(state, tokens, input_mask, loss_mask, **inputs):
        return task_reward(task, tokens, loss_mask, inputs)

    label, make_step = rl.online_step(
        config.algorithm,
        config,
        policy=model,
        score_fn=score_fn,
        rollout_config=rollout_config,
        eos_id=task.eos_id,
        score_inputs=task.reward_inputs,
    )

    def evaluate(state, policy):
        """The task's mean reward of one response per held-out prompt (on arithmetic:
        accuracy), greedy and sampled; the sampled responses' entropy and diversity."""
        greedy, sampled = (
            evaluate_policy(
                model,
                policy,
                task,
                evaluation,
                ctx.rngs["eval"],
                max_new_tokens=rollout_config.max_new_tokens,
                temperature=temperature,
            )
            for temperature in (0.0, 1.0)
        )
        monitor = ("entropy", "distinct_1", "distinct_2", "self_bleu")
        return {
            "reward/greedy": float(greedy["gold"].mean()),
            "reward/sampled": float(sampled["gold"].mean()),
            **{f"policy/{k}": float(np.mean(sampled[k])) for k in monitor},
        }

    def summarize(final, initial, state):
        return {
            "algorithm": label,
            "group_size": rollout_config.group_size,
            "steps": int(state.step),
            "initial_reward_greedy": initial["reward/greedy"],
            "initial_reward_sampled": initial["reward/sampled"],
            "reward_greedy": final["reward/greedy"],
            "reward_sampled": final["reward/sampled"],
        }

    return Stage(
        label=label,
        model=model,
        params=params,
        train=train,
        unit="prompts",
        make_step=lambda tx, view: make_step(tx=tx, policy_view=view),
        slots={"ref_params": params},
        evaluate=evaluate,
        summarize=summarize,
        log_keys=("proxy/mean", "kl/sequence"),
        evaluate_initial=True,
    )


KIND = StageKind("grpo", build)


def run(config, workdir) -> dict:
    return run_stage(KIND, config, workdir)
