"""Reward model on comparisons labelled by a simulated annotator of the gold reward, or a file's.

The compared responses are samples of the policy in `labels.policy_from` (the SFT stage) to
training prompts; evaluation pairs use held-out prompts. Pairs (Bradley-Terry with margin /
centring / label smoothing) or K-way rankings (InstructGPT's K-choose-2, or Plackett-Luce); an
ensemble (`reward.ensemble_size`) trains its members in one stacked step. Reports held-out
accuracy against the annotator's labels and against gold, calibration (reliability bins of
sigmoid(r_c - r_r) vs the annotator's own preference probability), the reward distribution, the
rank correlation with gold and the correlation with response length.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alignax import labels, objectives
from alignax.analysis.stats import spearman
from alignax.data.layouts import LM_KEYS
from alignax.data.sources import file_comparisons
from alignax.experiment import check_model_fits_task, check_model_fits_tokenizer, initial_params
from alignax.losses.reward import ensemble_rewards
from alignax.models import build_model
from alignax.tasks import get_task
from alignax.workflows.runner import Context, Stage, StageKind, run_stage

MODEL_INPUTS = (*LM_KEYS, "ranks")


def build_data(config, mesh):
    """(train, evaluation) comparisons: from `config.data.path` when set, else simulated
    annotators labelling responses (of the policy in `labels.policy_from`, or the task's
    generator) to training prompts and, for evaluation, to held-out prompts."""
    if config.data.path:
        train, evaluation, tokenizer = file_comparisons(config.data, max_len=config.model.max_len)
        check_model_fits_tokenizer(config.model, tokenizer)
        return train, evaluation
    task = get_task(config.task_name, config.task)
    check_model_fits_task(config.model, task)
    r = config.reward
    train = labels.comparisons(
        config.labels,
        task,
        mesh,
        config.pairs.num_pairs,
        seed=config.seed,
        split="train",
        num_responses=r.num_responses,
    )
    evaluation = labels.comparisons(
        config.labels, task, mesh, config.pairs.num_eval_pairs, seed=config.seed + 1, split="eval"
    )
    return train, evaluation


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
        "gold_spearman": spearman(flat_rewards, gold.reshape(-1)),
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


def build(config, ctx: Context) -> Stage:
    train, evaluation = build_data(config, ctx.mesh)
    model = build_model(config.model, heads=("reward",))
    members = config.reward.ensemble_size
    loss_fn = objectives.reward_model_loss_fn(model, config.loss)
    if members == 1:
        params = initial_params(model, config, ctx.mesh, ctx.rngs["init"])
    else:  # one stacked state; each member its own seed, gradient, clipping and Adam moments
        member_params = [
            initial_params(model, config, ctx.mesh, rng)
            for rng in jax.random.split(ctx.rngs["init"], members)
        ]
        params = jax.tree.map(lambda *xs: jnp.stack(xs), *member_params)
        loss_fn = objectives.ensemble_loss_fn(loss_fn)
    evaluate = make_evaluator(model, evaluation, members, config.reward.uncertainty_penalty)
    return Stage(
        label="reward_model",
        model=model,
        params=params,
        train={k: train[k] for k in MODEL_INPUTS},
        unit="comparisons",
        loss_fn=loss_fn,
        evaluate=lambda state, params: evaluate(params),
        summarize=lambda final, initial, state: {
            "steps": int(state.step),
            "ensemble_size": members,
            **final,
        },
        log_keys=("loss", "rewards/accuracy"),
        stacked_members=members > 1,
        # Under LoRA the new reward head trains in full beside the adapters.
        lora_heads=tuple(k for k in params if k.startswith("reward_")),
        lora_refusal=(
            "an ensemble (reward.ensemble_size > 1) stacks full members; train it with lora.rank=0"
            if members > 1
            else None
        ),
    )


# Its evaluation is deterministic: no stream for it.
KIND = StageKind("reward_model", build, rng_streams=("init", "train"))


def run(config, workdir) -> dict:
    return run_stage(KIND, config, workdir)
