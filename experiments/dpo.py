"""DPO and its offline family (IPO, cDPO, SimPO, ORPO, ...) on preference pairs, by loss name.

    python -m experiments.dpo --config configs/dpo.py:runlocal --workdir runs/dpo \
        --config.init_from=runs/sft --config.labels.policy_from=runs/sft

The policy and the reference both start from `init_from` (the SFT stage), and the pairs are
that policy's samples (`labels.policy_from`), labelled by a simulated annotator; the reference
forward runs inside the same jitted step. Reports held-out implicit-reward accuracy and margin,
and the gold reward, KL to the reference and length of sampled responses.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from alignax import labels, objectives, optim, steps
from alignax.analysis.policy_eval import evaluate_policy, summarize
from alignax.cli import run_experiment
from alignax.data.sources import file_comparisons
from alignax.experiment import (
    check_model_fits_task,
    check_model_fits_tokenizer,
    example_batch,
    initial_params,
    setup,
    trainable_state,
    write_summary,
)
from alignax.models import build_model
from alignax.tasks import get_task
from alignax.training import train_batches, train_loop

MODEL_INPUTS = ("tokens", "input_mask", "loss_mask")


def build_pairs(config, mesh):
    """(train, evaluation, task): pairs from `config.data.path` (task None), else simulated
    annotators labelling responses of the policy in `labels.policy_from` (or of the task's
    generator) to training prompts; evaluation pairs use held-out prompts."""
    if config.data.path:
        train, evaluation, tokenizer = file_comparisons(
            config.data, max_len=config.model.max_len, seed=config.seed
        )
        check_model_fits_tokenizer(config.model, tokenizer)
        if train["tokens"].shape[1] != 2:
            raise ValueError(
                f"{config.data.path}: DPO needs pairs, the file holds "
                f"{train['tokens'].shape[1]}-way rankings"
            )
        return ({k: train[k] for k in MODEL_INPUTS}, {k: evaluation[k] for k in MODEL_INPUTS}, None)
    task = get_task(config.task_name, config.task)
    check_model_fits_task(config.model, task)
    p = config.preferences

    def pairs(num, seed, split):
        out = labels.comparisons(config.labels, task, mesh, num, seed=seed, split=split)
        return {k: out[k] for k in MODEL_INPUTS}

    train = pairs(p.num_pairs, config.seed, "train")
    return train, pairs(p.num_eval_pairs, config.seed + 1, "eval"), task


@functools.partial(jax.jit, static_argnames="model")
def _option_logps(model, params, batch):
    return objectives.option_logps(model, params, batch)[0]


def precompute_reference_logps(model, ref_params, pairs: dict, batch_size: int) -> np.ndarray:
    """Reference log-probs of every pair, [N, 2], computed once before training (so each step
    runs one forward pass instead of two)."""
    chunks = [
        np.asarray(
            _option_logps(model, ref_params, {k: v[i : i + batch_size] for k, v in pairs.items()})
        )
        for i in range(0, len(pairs["tokens"]), batch_size)
    ]
    return np.concatenate(chunks).astype(np.float32)


def run(config, workdir, pairs=None):
    """`pairs`: (train, evaluation, task) labelled elsewhere (experiments/rlaif.py) instead of
    `build_pairs`."""
    workdir, mesh = setup(config, workdir)
    train, evaluation, task = build_pairs(config, mesh) if pairs is None else pairs
    model = build_model(config.model, heads=("lm",))
    rng_init, rng_train, rng_eval = jax.random.split(jax.random.key(config.seed), 3)
    tx = optim.make_optimizer(config)
    params = initial_params(model, config, mesh, rng_init)
    # Reference-free losses keep no reference copy; BCO-style losses get their running shift.
    slots = objectives.preference_state_slots(config.loss, params)
    state, loss_fn, policy_params = trainable_state(
        config,
        model,
        params,
        tx,
        mesh,
        rng_init,
        objectives.preference_loss_fn(model, config.loss),
        **slots,
    )
    # Reference-free losses keep no reference in the state; to report their samples' KL to the
    # initial policy, the evaluation keeps a copy of it (the first step donates `params`).
    initial_copy = None
    if state.ref_params is None and config.preferences.eval_kl_to_initial:
        initial_copy = jax.tree.map(lambda x: jnp.array(x, copy=True), params)
    if config.preferences.precompute_reference:
        train["ref_logps"] = precompute_reference_logps(
            model, params, train, config.train.batch_size
        )
    batches = train_batches(config, train, unit="pairs")
    train_step = steps.jit_step(
        objectives.preference_train_step(
            steps.make_train_step(loss_fn, tx, grad_accum_steps=config.train.grad_accum_steps),
            config.loss,
        ),
        state,
        example_batch(train, config.train.batch_size),
        mesh,
    )
    eval_step = jax.jit(steps.make_eval_step(loss_fn))
    if task is not None:
        prompts = task.prompt_dataset(
            config.preferences.num_eval_prompts, seed=config.seed + 2, split="eval"
        )

    def eval_fn(state):
        held_out = jax.device_get(eval_step(state, evaluation, rng_eval))
        report = {}  # samples scored by gold: only the built-in task has a gold reward
        if task is not None:
            report = summarize(
                evaluate_policy(
                    model,
                    policy_params(state),
                    task,
                    prompts,
                    rng_eval,
                    ref_params=initial_copy if state.ref_params is None else state.ref_params,
                    max_new_tokens=config.preferences.max_new_tokens,
                )
            )
        return {
            "loss": float(held_out["loss"]),
            "accuracy": float(held_out["rewards/accuracy"]),
            "margin": float(held_out["rewards/margin"]),
            **{f"policy/{k}": v for k, v in report.items()},
        }

    state = train_loop(
        state=state,
        step_fn=train_step,
        batches=batches,
        mesh=mesh,
        workdir=workdir,
        config=config,
        rng=rng_train,
        name=config.loss.name,
        eval_fn=eval_fn,
        log_keys=("loss", "rewards/accuracy", "rewards/margin"),
    )
    final = eval_fn(state)
    summary = {
        "loss_name": config.loss.name,
        "steps": int(state.step),
        "eval_accuracy": final["accuracy"],
        "eval_margin": final["margin"],
    }
    if task is not None:
        summary.update(
            gold_reward=final["policy/gold"],
            # None for reference-free losses, unless preferences.eval_kl_to_initial
            kl_to_reference=final.get("policy/kl"),
            response_length=final["policy/length"],
        )
    write_summary(workdir, summary)
    return summary


if __name__ == "__main__":
    run_experiment(run)
