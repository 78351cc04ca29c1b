"""Preference data the way the papers collect it: responses sampled from the policy being
aligned, labelled by a simulated annotator of the task's gold reward; and step labels of
multi-step solutions for process reward models, by Monte Carlo rollouts from each step.

InstructGPT, Gao et al. (2022) and the DPO paper label pairs of samples from the SFT policy: the
reward model then learns about the distribution PPO starts from, and DPO's pairs lie where its
reference puts mass. `labels.source = "generator"` keeps the task's own generator as the source
of responses, for ablations.

    comparisons = labels.comparisons(config.labels, task, mesh, 4096, seed=0, split="train")
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from alignax.data.batching import chunk_rows
from alignax.sampling import sample
from alignax.stages import load_stage_model
from alignax.tasks import Annotator, require
from alignax.tasks.base import response_lengths

SOURCES = ("policy", "generator")


def default_labels_config(**overrides) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(
        {
            # "policy": responses sampled from the policy in `policy_from` (the SFT stage's
            # workdir); "generator": the task's own text generator (ablation).
            "source": "policy",
            "policy_from": "",
            "temperature": 1.0,  # sampling temperature of the policy's responses
            "max_new_tokens": 32,
            "annotator": "bradley_terry",  # | "hard"
            "annotator_temperature": 0.5,
            "flip_rate": 0.0,
            # A known length bias: gold units the annotator adds per response token (0: none).
            "length_bias": 0.0,
        }
    )
    config.update(overrides)
    return config


def annotator(labels: ml_collections.ConfigDict) -> Annotator:
    return Annotator(
        kind=labels.annotator,
        temperature=labels.annotator_temperature,
        flip_rate=labels.flip_rate,
        length_bias=labels.length_bias,
    )


def annotator_prefers_first(
    labels: ml_collections.ConfigDict, pairs: dict, rng: np.random.Generator
) -> np.ndarray:
    """[N] bool: the annotator of `labels` prefers each pair's first response (`pairs`: a
    comparisons layout with `gold_reward` [N, 2] and `loss_mask`, its length bias's lengths)."""
    judge = annotator(labels)
    utility = judge.utility(pairs["gold_reward"], response_lengths(pairs))
    return judge.prefer_first(utility[:, 0], utility[:, 1], rng)


def policy_responses(
    model,
    params,
    task,
    prompts: list[list[int]],
    rng: jax.Array,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    chunk_size: int = 1024,
) -> list[list[int]]:
    """One sampled response (token ids, EOS included when emitted) per prompt, in chunks of a
    fixed shape (`data.batching.chunk_rows`) so the sampler compiles once per chunk size."""
    return sampled_responses(
        model,
        params,
        task.encode_prompts(prompts),
        rng,
        eos_id=task.eos_id,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        chunk_size=chunk_size,
    )


def sampled_responses(
    model,
    params,
    encoded: dict[str, np.ndarray],
    rng: jax.Array,
    *,
    eos_id: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    chunk_size: int = 1024,
) -> list[list[int]]:
    """`policy_responses` of prompts already in the prompts layout (`encoded`: prompt_tokens
    and prompt_mask, left-padded)."""
    width = encoded["prompt_tokens"].shape[1]
    num_prompts = len(encoded["prompt_tokens"])
    chunk_size = chunk_rows(num_prompts, chunk_size)
    responses = []
    for start in range(0, num_prompts, chunk_size):
        stop = min(start + chunk_size, num_prompts)
        pad = chunk_size - (stop - start)
        tokens, mask = (
            np.pad(encoded[k][start:stop], ((0, pad), (0, 0)), constant_values=1)
            for k in ("prompt_tokens", "prompt_mask")
        )
        out = sample(
            model,
            params,
            tokens,
            mask,
            jax.random.fold_in(rng, start),
            max_new_tokens=max_new_tokens,
            eos_id=eos_id,
            temperature=temperature,
        )
        response_tokens = np.asarray(out.tokens[:, width:])
        response_mask = np.asarray(out.loss_mask[:, width:]) > 0
        responses += [
            row[keep].tolist()
            for row, keep in zip(response_tokens[: stop - start], response_mask[: stop - start])
        ]
    return responses


def policy_completer(
    model,
    params,
    task,
    rng: jax.Array,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    chunk_size: int = 1024,
) -> Callable[[list[list[int]]], list[list[int]]]:
    """`complete(rows)`: one completion sampled from the policy per row of prompt + solution
    prefix ids (laid out `task.prompt_len + max_new_tokens` wide), every call with the key
    `rng`."""
    require(task, "step_labels", by="labels.policy_completer")
    width = task.prompt_len + max_new_tokens

    def complete(rows: list[list[int]]) -> list[list[int]]:
        return sampled_responses(
            model,
            params,
            task.encode_prompts(rows, width),
            rng,
            eos_id=task.eos_id,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            chunk_size=chunk_size,
        )

    return complete


def monte_carlo_step_labels(
    task,
    prompts: list[list[int]],
    responses: list[list[int]],
    complete: Callable[[list[list[int]]], list[list[int]]],
    num_rollouts: int,
) -> list[list[float]]:
    """Step labels by rollouts (Wang et al. 2024, Math-Shepherd): per step of each response
    (`task.step_labels` counts them), the share of `num_rollouts` completions of the response up
    to the end of that step (`complete`, e.g. `policy_completer`) that the verifier accepts; the
    last step's label is whether the response itself is verified. A step is labelled by whether
    a solution can still be reached from it, not by whether it is right: a right step after a
    wrong one scores low, and a wrong step the rollouts recover from scores high."""
    require(task, "step_labels", by="labels.monte_carlo_step_labels")
    if num_rollouts < 1:
        raise ValueError(f"num_rollouts={num_rollouts} must be >= 1")
    rows, owners = [], []
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        for j, prefix in enumerate(task.step_prefixes(response)):
            rows += [[*prompt, *prefix]] * num_rollouts
            owners += [(i, j, prefix)] * num_rollouts
    completions = complete(rows) if rows else []
    solutions = [task.answer_of(prompt) for prompt in prompts]
    hits = [[0] * len(task.step_prefixes(r)) for r in responses]
    for (i, j, prefix), completion in zip(owners, completions, strict=True):
        hits[i][j] += task.verified([*prefix, *completion], solutions[i])
    return [
        [*(h / num_rollouts for h in counts), float(task.verified(response, solution))]
        for counts, response, solution in zip(hits, responses, solutions, strict=True)
    ]


def step_layout(
    task, prompts: list[list[int]], responses: list[list[int]], step_labels: list[list[float]]
) -> dict[str, np.ndarray]:
    """The LM layout of (prompt, response) rows (`task.encode`) with `step_mask` 1 at the last
    token of each step (each "=" the response writes, then its own last token: EOS when it
    ended) and `step_labels` there (`task.step_labels` or `monte_carlo_step_labels`): what a
    process reward model learns from (`losses.reward.process_reward_loss`). A response cut
    right after an "=" ends on an empty step that shares that token, which takes the lower of
    the two labels."""
    require(task, "step_labels", by="labels.step_layout")
    out = task.encode(prompts, responses)
    out["step_mask"] = np.zeros(out["tokens"].shape, np.int32)
    out["step_labels"] = np.zeros(out["tokens"].shape, np.float32)
    for i, (response, row_labels) in enumerate(zip(responses, step_labels, strict=True)):
        if not response:
            raise ValueError(f"response {i} is empty: it has no step to label")
        start = int(np.argmax(out["loss_mask"][i]))  # where the response begins
        ends = [len(p) - 1 for p in task.step_prefixes(response)] + [len(response) - 1]
        if len(ends) != len(row_labels):
            raise ValueError(
                f"response {i} has {len(ends)} steps but {len(row_labels)} step labels"
            )
        for end, label in zip(ends, row_labels):
            labelled = out["step_mask"][i, start + end]
            previous = out["step_labels"][i, start + end]
            out["step_mask"][i, start + end] = 1
            out["step_labels"][i, start + end] = min(label, previous) if labelled else label
    return out


def comparisons(
    labels: ml_collections.ConfigDict,
    task,
    mesh: Mesh,
    n: int,
    *,
    seed: int,
    split: str,
    num_responses: int = 2,
) -> dict[str, np.ndarray]:
    """`n` comparisons of `num_responses` responses to prompts of `split`, in the comparisons
    layout of `task.comparison_dataset` (best first, with `gold_reward` and, for pairs,
    `label_probability`: the annotator's P(first preferred))."""
    if labels.source not in SOURCES:
        raise ValueError(f"labels.source={labels.source!r}; allowed: {', '.join(SOURCES)}")
    judge = annotator(labels)
    if labels.source == "generator":
        require(
            task,
            "generator_comparisons",
            by="labels.source='generator'",
            hint="Label a policy's samples (labels.source='policy', labels.policy_from=<SFT "
            "workdir>)",
        )
        out = task.comparison_dataset(
            n, seed=seed, annotator=judge, num_responses=num_responses, split=split
        )
    else:
        if not labels.policy_from:
            raise ValueError(
                "labels.source='policy' needs labels.policy_from: the workdir of the policy whose "
                "samples are labelled (the SFT stage), or set labels.source='generator'"
            )
        model, params = load_stage_model(labels.policy_from, heads=("lm",), mesh=mesh)
        rng = np.random.default_rng([seed, 7])
        prompts = task.sample_prompts(n, rng, split=split)
        repeated = [p for p in prompts for _ in range(num_responses)]
        responses = policy_responses(
            model,
            params,
            task,
            repeated,
            jax.random.key(seed),
            max_new_tokens=labels.max_new_tokens,
            temperature=labels.temperature,
        )
        out = task.label_comparisons(repeated, responses, num_responses, judge, rng)
    if num_responses == 2:
        utility = judge.utility(out["gold_reward"], response_lengths(out))
        out["label_probability"] = judge.preference_probability(
            utility[:, 0], utility[:, 1]
        ).astype(np.float32)
    return out


def shuffled_generator_pairs(task, n: int, *, seed: int, split: str) -> dict[str, np.ndarray]:
    """`n` pairs of the task's generator responses to prompts of `split`, each pair in random
    order (so that neither position means "preferred"): `tokens`, `input_mask`, `loss_mask`
    [n, 2, L] and `gold_reward` [n, 2], for a study that labels them itself (by gold, by a
    weak model, by annotators of several groups)."""
    require(task, "generator_comparisons", by="shuffled_generator_pairs")
    pairs = task.comparison_dataset(n, seed=seed, annotator=Annotator(kind="hard"), split=split)
    swap = np.random.default_rng([seed, 5]).random(n) < 0.5
    out = {
        k: np.where(swap[:, None, None], pairs[k][:, ::-1], pairs[k])
        for k in ("tokens", "input_mask", "loss_mask")
    }
    out["gold_reward"] = np.where(
        swap[:, None], pairs["gold_reward"][:, ::-1], pairs["gold_reward"]
    )
    return out


def generator_pool(task, num_prompts: int, pool_size: int, *, seed: int) -> dict[str, np.ndarray]:
    """`pool_size` generator responses to each of `num_prompts` held-out prompts (split "eval"),
    in the comparisons layout [P, S, L] with `gold_reward` [P, S]: the pool a study's best-of-n
    reads (the order within a prompt is gold's, which best-of-n by another score ignores)."""
    require(task, "generator_comparisons", by="generator_pool")
    return task.comparison_dataset(
        num_prompts,
        seed=seed,
        annotator=Annotator(kind="hard"),
        num_responses=pool_size,
        split="eval",
    )
