"""Supervised fine-tuning (and pretraining): next-token loss on the scored tokens.

    python -m experiments.sft --config configs/sft.py:runlocal --workdir runs/sft
    python -m experiments.sft --config configs/sft.py:pretrain --workdir runs/pretrain

With `sft.data = 'demonstrations'` the loss covers response tokens only (prompt masked); with
'pretraining' it covers every token of generator text. Evaluates held-out NLL and the gold reward
of sampled responses; writes metrics.jsonl, samples.jsonl, checkpoints and summary.json.
"""

from __future__ import annotations

import jax

from alignax import objectives, optim, sharding, steps
from alignax.analysis.policy_eval import evaluate_policy, summarize
from alignax.cli import run_experiment
from alignax.data.batching import pack_sequences
from alignax.experiment import (
    check_model_fits_task,
    example_batch,
    initial_params,
    setup,
    trainable_state,
    write_summary,
)
from alignax.metrics import MetricWriter
from alignax.models import build_model
from alignax.tasks import get_task, require
from alignax.training import train_batches, train_loop


def build_data(config, task):
    """(train, eval) arrays in the LM layout."""
    s = config.sft
    if s.data == "pretraining":
        require(task, "pretraining_text", by="sft.data='pretraining'")
        train = task.pretraining_dataset(s.num_examples, seed=config.seed)
        evaluation = task.pretraining_dataset(
            s.num_eval_examples, seed=config.seed + 1, split="eval"
        )
    elif s.data == "demonstrations":
        require(task, "demonstrations", by="sft.data='demonstrations'")
        # Demonstrations chosen by gold among `sft.num_candidates` candidates where the task
        # makes them so (the review task's); otherwise the task's own (arithmetic: the answers).
        best_of = (
            {"num_candidates": s.num_candidates}
            if "best_of_n_demonstrations" in task.capabilities
            else {}
        )
        train = task.sft_dataset(s.num_examples, seed=config.seed, **best_of)
        evaluation = task.sft_dataset(
            s.num_eval_examples, seed=config.seed + 1, split="eval", **best_of
        )
    else:
        raise ValueError(f"sft.data={s.data!r} is not one of ('pretraining', 'demonstrations')")
    keys = ("tokens", "input_mask", "loss_mask")
    train, evaluation = {k: train[k] for k in keys}, {k: evaluation[k] for k in keys}
    return (pack_rows(train) if s.pack else train), evaluation


def pack_rows(arrays: dict) -> dict:
    """Padded LM rows -> packed rows of the same length (`pack_sequences`), with segment_ids."""
    real = arrays["input_mask"].astype(bool)
    return pack_sequences(
        [row[keep] for row, keep in zip(arrays["tokens"], real, strict=True)],
        arrays["tokens"].shape[1],
        loss_masks=[row[keep] for row, keep in zip(arrays["loss_mask"], real, strict=True)],
    )


def run(config, workdir, data=None):
    """`data`: (train, eval) arrays in the LM layout built elsewhere (experiments/
    critique_revision.py: revised responses) instead of `build_data`."""
    workdir, mesh = setup(config, workdir)
    task = get_task(config.task_name, config.task)
    check_model_fits_task(config.model, task)
    train_data, eval_data = build_data(config, task) if data is None else data
    model = build_model(config.model, heads=("lm",))
    rng_init, rng_train, rng_eval = jax.random.split(jax.random.key(config.seed), 3)
    tx = optim.make_optimizer(config)
    params = initial_params(model, config, mesh, rng_init)
    state, loss_fn, policy_params = trainable_state(
        config, model, params, tx, mesh, rng_init, objectives.lm_loss_fn(model)
    )
    batches = train_batches(config, train_data, unit="examples")
    train_step = steps.jit_step(
        steps.make_train_step(loss_fn, tx, grad_accum_steps=config.train.grad_accum_steps),
        state,
        example_batch(train_data, config.train.batch_size),
        mesh,
    )
    eval_batch = sharding.shard_batch(eval_data, mesh)
    eval_loss = jax.jit(steps.make_eval_step(loss_fn))
    prompts = task.prompt_dataset(config.sft.num_eval_prompts, seed=config.seed + 2, split="eval")
    writer = MetricWriter(workdir, tensorboard=False)

    def eval_fn(state):
        metrics = {"nll": float(eval_loss(state, eval_batch, rng_eval)["nll"])}
        result = evaluate_policy(
            model,
            policy_params(state),
            task,
            prompts,
            rng_eval,
            max_new_tokens=config.sft.max_new_tokens,
        )
        writer.write_texts(int(state.step), "samples", result["texts"])
        return {**metrics, **{f"policy/{k}": v for k, v in summarize(result).items()}}

    state = train_loop(
        state=state,
        step_fn=train_step,
        batches=batches,
        mesh=mesh,
        workdir=workdir,
        config=config,
        rng=rng_train,
        name=config.sft.data,
        eval_fn=eval_fn,
        log_keys=("loss", "entropy"),
    )
    final = eval_fn(state)
    summary = {
        "steps": int(state.step),
        "eval_nll": final["nll"],
        "gold_reward": final["policy/gold"],
        "response_length": final["policy/length"],
        "ended_with_eos": final["policy/ended_with_eos"],
    }
    write_summary(workdir, summary)
    writer.close()
    return summary


if __name__ == "__main__":
    run_experiment(run)
