"""Reward model on comparisons labelled by a simulated annotator of the gold reward.

    python -m experiments.reward_model --config configs/reward_model.py:runlocal --workdir runs/rm \
        --config.labels.policy_from=runs/sft

The compared responses are samples of the policy in `labels.policy_from` (the SFT stage) to
training prompts; evaluation pairs use held-out prompts. Pairs (Bradley-Terry with margin /
centring / label smoothing) or K-way rankings (InstructGPT's K-choose-2, or Plackett-Luce).
Reports held-out accuracy against the annotator's labels and against gold, calibration
(reliability bins of sigmoid(r_c - r_r) vs the annotator's own preference probability), the
reward distribution, the rank correlation with gold and the correlation with response length.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alignax import labels, objectives, optim, steps
from alignax.cli import run_experiment
from alignax.data.sources import file_comparisons
from alignax.experiment import (
    check_model_fits_task,
    check_model_fits_tokenizer,
    example_batch,
    initial_params,
    setup,
    write_summary,
)
from alignax.losses.reward import ensemble_rewards
from alignax.models import build_model
from alignax.state import TrainState
from alignax.tasks import get_task
from alignax.training import train_batches, train_loop

MODEL_INPUTS = ("tokens", "input_mask", "loss_mask", "ranks")


def build_data(config, mesh):
    """(train, evaluation) comparisons: from `config.data.path` when set, else simulated
    annotators labelling responses (of the policy in `labels.policy_from`, or the task's
    generator) to training prompts and, for evaluation, to held-out prompts."""
    if config.data.path:
        train, evaluation, tokenizer = file_comparisons(
            config.data, max_len=config.model.max_len, seed=config.seed
        )
        check_model_fits_tokenizer(config.model, tokenizer)
        return train, evaluation
    task = get_task(config.task_name, config.task)
    check_model_fits_task(config.model, task)
    r = config.reward
    train = labels.comparisons(
        config.labels,
        task,
        mesh,
        r.num_comparisons,
        seed=config.seed,
        split="train",
        num_responses=r.num_responses,
    )
    evaluation = labels.comparisons(
        config.labels, task, mesh, r.num_eval_comparisons, seed=config.seed + 1, split="eval"
    )
    return train, evaluation


def _spearman(a, b):
    rank = lambda x: np.argsort(np.argsort(x))
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def pair_metrics(rewards, pairs: dict, *, num_bins: int = 5) -> dict[str, float]:
    """Held-out metrics of rewards [N, K] on comparisons ordered best-first: accuracy of
    preferring the best option over the second, and reward statistics. With the built-in task's
    `gold_reward` [N, K]: agreement with gold, calibration against gold, rank correlation."""
    rewards = np.asarray(rewards)
    margin = rewards[:, 0] - rewards[:, 1]
    lengths = pairs["loss_mask"].sum(-1).reshape(-1)
    flat_rewards = rewards.reshape(-1)
    metrics = {
        "accuracy": float(np.mean(margin > 0)),
        "reward_mean": float(flat_rewards.mean()),
        "reward_std": float(flat_rewards.std()),
        "length_correlation": float(np.corrcoef(flat_rewards, lengths)[0, 1]),
    }
    if "gold_reward" not in pairs:
        return metrics
    gold = pairs["gold_reward"]
    prob_first = 1.0 / (1.0 + np.exp(-margin))
    gold_first = gold[:, 0] > gold[:, 1]
    # Reliability: within bins of predicted P(first preferred), the annotator's own probability
    # of preferring the first (the best a reward model could predict from these labels).
    target = pairs["label_probability"]
    bins = np.minimum((prob_first * num_bins).astype(int), num_bins - 1)
    calibration_error = sum(
        (bins == b).mean() * abs(prob_first[bins == b].mean() - target[bins == b].mean())
        for b in range(num_bins)
        if (bins == b).any()
    )
    return {
        **metrics,
        "gold_accuracy": float(np.mean((margin > 0) == gold_first)),
        "calibration_error": float(calibration_error),
        "gold_spearman": _spearman(flat_rewards, gold.reshape(-1)),
    }


def make_evaluator(model, pairs: dict, ensemble_size: int, uncertainty_penalty: float):
    """params -> held-out metrics; for an ensemble, the metrics of every way of combining the
    members (mean, worst case, mean - lambda * std) and the members' mean accuracy."""
    inputs = {k: pairs[k] for k in ("tokens", "input_mask")}
    score = lambda p: objectives.comparison_rewards(model, p, inputs)
    if ensemble_size == 1:
        score = jax.jit(score)
        return lambda params: pair_metrics(score(params), pairs)
    score = jax.jit(jax.vmap(score))

    def evaluate(params):
        rewards_ExNxK = score(params)
        flat = rewards_ExNxK.reshape(ensemble_size, -1)
        metrics = {
            "member_accuracy": float(
                np.mean(np.asarray(rewards_ExNxK[:, :, 0] > rewards_ExNxK[:, :, 1]))
            )
        }
        for method in ("mean", "min", "mean_minus_std"):
            combined = ensemble_rewards(
                flat, method=method, uncertainty_penalty=uncertainty_penalty
            )
            metrics.update(
                {
                    f"{method}/{k}": v
                    for k, v in pair_metrics(
                        combined.reshape(rewards_ExNxK.shape[1:]), pairs
                    ).items()
                }
            )
        return metrics

    return evaluate


def run(config, workdir):
    workdir, mesh = setup(config, workdir)
    train, evaluation = build_data(config, mesh)
    train_inputs = {k: train[k] for k in MODEL_INPUTS}
    model = build_model(config.model, heads=("reward",))
    members = config.reward.ensemble_size
    rng_init, rng_train = jax.random.split(jax.random.key(config.seed))
    loss_fn = objectives.reward_model_loss_fn(model, config.loss)
    if members == 1:
        params = initial_params(model, config, mesh, rng_init)
    else:  # one stacked state; each member its own seed, gradient, clipping and Adam moments
        member_params = [
            initial_params(model, config, mesh, rng) for rng in jax.random.split(rng_init, members)
        ]
        params = jax.tree.map(lambda *xs: jnp.stack(xs), *member_params)
        loss_fn = objectives.ensemble_loss_fn(loss_fn)
    tx = optim.make_optimizer(config, stacked_members=members > 1)
    state = TrainState.create(params, tx, mesh)
    batches = train_batches(config, train_inputs, unit="comparisons")
    train_step = steps.jit_step(
        steps.make_train_step(loss_fn, tx, grad_accum_steps=config.train.grad_accum_steps),
        state,
        example_batch(train_inputs, config.train.batch_size),
        mesh,
    )
    evaluate = make_evaluator(model, evaluation, members, config.reward.uncertainty_penalty)
    state = train_loop(
        state=state,
        step_fn=train_step,
        batches=batches,
        mesh=mesh,
        workdir=workdir,
        config=config,
        rng=rng_train,
        name="reward_model",
        log_keys=("loss", "rewards/accuracy"),
        eval_fn=lambda s: evaluate(s.params),
    )
    summary = {"steps": int(state.step), "ensemble_size": members, **evaluate(state.params)}
    write_summary(workdir, summary)
    return summary


if __name__ == "__main__":
    run_experiment(run)
