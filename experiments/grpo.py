"""GRPO / Dr.GRPO / RLOO with a verifiable reward (RLVR) on the built-in arithmetic task.

    python -m experiments.sft --config configs/sft.py:arithmetic --workdir runs/arith_sft
    python -m experiments.grpo --config configs/grpo.py:runlocal --workdir runs/grpo \
        --config.init_from=runs/arith_sft

G samples per prompt, the group's rewards as the baseline (no value model), exact-match rewards
from the task's checker, KL to the starting policy via k3. Reports accuracy (greedy and sampled)
on held-out problems.
"""

from __future__ import annotations

import jax

from alignax import rl, steps
from alignax.analysis.policy_eval import evaluate_policy, task_reward
from alignax.cli import run_experiment
from alignax.data.batching import BatchIterator
from alignax.models import build_model
from alignax.state import TrainState
from alignax.tasks import get_task
from alignax.training import (
    check_model_fits_task,
    example_batch,
    initial_params,
    setup,
    train_loop,
    write_summary,
)

MODEL_INPUTS = ("prompt_tokens", "prompt_mask", "answer_tokens")


def accuracy(model, params, task, prompts, rng, *, max_new_tokens, temperature):
    """Fraction of held-out problems answered exactly."""
    result = evaluate_policy(
        model, params, task, prompts, rng, max_new_tokens=max_new_tokens, temperature=temperature
    )
    return float(result["gold"].mean())


def run(config, workdir):
    workdir, mesh = setup(config, workdir)
    task = get_task(config.task_name, config.task)
    check_model_fits_task(config.model, task)
    train = task.prompt_dataset(config.rollout.num_prompts, seed=config.seed, split="train")
    evaluation = task.prompt_dataset(
        config.rollout.num_eval_prompts, seed=config.seed + 1, split="eval"
    )
    train = {k: train[k] for k in MODEL_INPUTS}
    evaluation = {k: evaluation[k] for k in MODEL_INPUTS}
    model = build_model(config.model, heads=("lm",))
    rng_init, rng_train, rng_eval = jax.random.split(jax.random.key(config.seed), 3)
    tx = steps.make_optimizer(config)
    params = initial_params(model, config, mesh, rng_init)
    state = TrainState.create(params, tx, mesh, ref_params=params)
    group = config.grpo.group_size

    def score_fn(state, tokens, input_mask, loss_mask, answers):
        return task_reward(task, tokens, loss_mask, {"answer_tokens": answers})

    grpo_step = rl.make_grpo_step(
        policy=model,
        score_fn=score_fn,
        tx=tx,
        config=config,
        eos_id=task.eos_id,
        score_inputs=("answer_tokens",),
    )
    train_step = steps.jit_step(
        grpo_step, state, example_batch(train, config.train.batch_size), mesh
    )

    def eval_fn(state):
        kwargs = dict(max_new_tokens=config.grpo.max_new_tokens)
        return {
            "accuracy/greedy": accuracy(
                model, state.params, task, evaluation, rng_eval, temperature=0.0, **kwargs
            ),
            "accuracy/sampled": accuracy(
                model, state.params, task, evaluation, rng_eval, temperature=1.0, **kwargs
            ),
        }

    initial = eval_fn(state)
    batches = BatchIterator(train, batch_size=config.train.batch_size, seed=config.seed)
    state = train_loop(
        state=state,
        step_fn=train_step,
        batches=batches,
        mesh=mesh,
        workdir=workdir,
        config=config,
        rng=rng_train,
        name=config.grpo.baseline,
        eval_fn=eval_fn,
        log_keys=("proxy/mean", "kl/sequence"),
    )
    final = eval_fn(state)
    summary = {
        "baseline": config.grpo.baseline,
        "group_size": group,
        "steps": int(state.step),
        "initial_accuracy_greedy": initial["accuracy/greedy"],
        "initial_accuracy_sampled": initial["accuracy/sampled"],
        "accuracy_greedy": final["accuracy/greedy"],
        "accuracy_sampled": final["accuracy/sampled"],
    }
    write_summary(workdir, summary)
    return summary


if __name__ == "__main__":
    run_experiment(run)
