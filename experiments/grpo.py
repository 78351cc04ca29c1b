"""GRPO / Dr.GRPO / RLOO, XPO (`configs/grpo.py:xpo`) or Nash-MD (`:nash_md`), with a task's
own reward: the arithmetic task's exact-match verifier (RLVR), or the review task's gold reward
(`configs/grpo.py:review`).

    python -m experiments.sft --config configs/sft.py:arithmetic --workdir runs/arith_sft
    python -m experiments.grpo --config configs/grpo.py:runlocal --workdir runs/grpo \
        --config.init_from=runs/arith_sft

GRPO family: G samples per prompt, the group's rewards as the baseline (no value model), KL to
the starting policy via k3. XPO (`config.algorithm = 'xpo'`): one policy and one reference
response per prompt, the reward as the judge of the pair, DPO on it plus an exploration term
(alignax/rl/xpo.py). Nash-MD (`config.algorithm = 'nash_md'`): one policy response and one from
the geometric mixture of policy and reference per prompt, the reward's preference between them
(sigmoid of the difference) as a policy-gradient signal, KL to the reference
(alignax/rl/nash_md.py). Reports the mean task reward of greedy and sampled responses to held-out
prompts (on arithmetic: the share of problems answered exactly).
"""

from __future__ import annotations

import jax

from alignax import optim, rl, steps
from alignax.analysis.policy_eval import evaluate_policy, task_reward
from alignax.cli import run_experiment
from alignax.experiment import (
    check_model_fits_task,
    example_batch,
    initial_params,
    setup,
    write_summary,
)
from alignax.models import build_model
from alignax.state import TrainState
from alignax.tasks import get_task
from alignax.tasks.base import device_prompts
from alignax.training import train_batches, train_loop


def mean_reward(model, params, task, prompts, rng, *, max_new_tokens, temperature):
    """The task's mean reward of one response per held-out prompt (on arithmetic: accuracy)."""
    result = evaluate_policy(
        model, params, task, prompts, rng, max_new_tokens=max_new_tokens, temperature=temperature
    )
    return float(result["gold"].mean())


def run(config, workdir):
    workdir, mesh = setup(config, workdir)
    task = get_task(config.task_name, config.task)
    check_model_fits_task(config.model, task)
    rollout_config = rl.RolloutConfig.from_config(config.rollout)
    train = task.prompt_dataset(rollout_config.num_prompts, seed=config.seed, split="train")
    evaluation = task.prompt_dataset(
        rollout_config.num_eval_prompts, seed=config.seed + 1, split="eval"
    )
    train, evaluation = device_prompts(task, train), device_prompts(task, evaluation)
    model = build_model(config.model, heads=("lm",))
    rng_init, rng_train, rng_eval = jax.random.split(jax.random.key(config.seed), 3)
    tx = optim.make_optimizer(config)
    params = initial_params(model, config, mesh, rng_init)
    state = TrainState.create(params, tx, mesh, ref_params=params)

    def score_fn(state, tokens, input_mask, loss_mask, **inputs):
        return task_reward(task, tokens, loss_mask, inputs)

    common = dict(
        policy=model,
        score_fn=score_fn,
        tx=tx,
        rollout_config=rollout_config,
        eos_id=task.eos_id,
        score_inputs=task.reward_inputs,
    )
    name, online_step = rl.online_step(config.algorithm, config, **common)
    batches = train_batches(config, train, unit="prompts")
    train_step = steps.jit_step(
        online_step, state, example_batch(train, config.train.batch_size), mesh
    )

    def eval_fn(state):
        kwargs = dict(max_new_tokens=rollout_config.max_new_tokens)
        return {
            "reward/greedy": mean_reward(
                model, state.params, task, evaluation, rng_eval, temperature=0.0, **kwargs
            ),
            "reward/sampled": mean_reward(
                model, state.params, task, evaluation, rng_eval, temperature=1.0, **kwargs
            ),
        }

    initial = eval_fn(state)
    state = train_loop(
        state=state,
        step_fn=train_step,
        batches=batches,
        mesh=mesh,
        workdir=workdir,
        config=config,
        rng=rng_train,
        name=name,
        eval_fn=eval_fn,
        log_keys=("proxy/mean", "kl/sequence"),
    )
    final = eval_fn(state)
    summary = {
        "algorithm": name,
        "group_size": rollout_config.group_size,
        "steps": int(state.step),
        "initial_reward_greedy": initial["reward/greedy"],
        "initial_reward_sampled": initial["reward/sampled"],
        "reward_greedy": final["reward/greedy"],
        "reward_sampled": final["reward/sampled"],
    }
    write_summary(workdir, summary)
    return summary


if __name__ == "__main__":
    run_experiment(run)
