"""Best-of-n with verifiers: how often the solution a reward model picks from n samples is right.

From one pool of N samples per problem, for each n: the pick of an outcome or process reward
model (the unbiased best-of-n estimate, alignax.analysis.best_of_n), majority voting over the
final answers (`majority_vote_accuracy`) and the oracle, which picks a right sample whenever
one of the n is right (pass@n). Across seeds: mean and 95% t-interval of each, and of the paired
differences that the criteria read.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from alignax import labels
from alignax.analysis import plots
from alignax.analysis.best_of_n import best_of_n_per_prompt, majority_vote_accuracy
from alignax.analysis.pass_at_k import pass_at_k
from alignax.analysis.policy_eval import (
    EVAL_SEED_OFFSET,
    distinct_held_out_problems,
    prompt_texts,
    sample_pool,
    score_in_chunks,
)
from alignax.analysis.stats import mean_interval
from alignax.losses.reward import solution_scores
from alignax.stages import load_stage_model
from alignax.tasks import get_task
from alignax.tasks.arithmetic import final_answer

# The reward models (stages of experiments.prm), and what the figures call them.
REWARD_MODELS = {
    "orm": "ORM (outcome labels)",
    "prm_checker": "PRM (step checker labels)",
    "prm_monte_carlo": "PRM (Monte Carlo labels)",
}
SELECTORS = {"oracle": "oracle (pass@n)", "majority": "majority vote", **REWARD_MODELS}
# The paired differences the study reports, as (first, second): first - second.
DIFFERENCES = (
    ("prm_checker", "orm"),
    ("prm_monte_carlo", "orm"),
    ("prm_checker", "prm_monte_carlo"),
    ("prm_checker", "majority"),
)
MODEL_METRICS = ("step_accuracy", "solution_auc", "label")


def difference_name(first: str, second: str) -> str:
    return f"{first} - {second}"


def solution_pool(config, seed: int, sft_dir: Path, mesh) -> tuple[dict, dict]:
    """(pool, layout): `config.eval.num_samples` samples of the policy in `sft_dir` at
    `eval.temperature` on each of `eval.num_problems` distinct held-out problems of the config's
    task, drawn from `seed`; the pool holds `correct` [P, N] (the verifier), `sound` [P, N]
    (every step right, by the checker) and the final answers as codes (`answer_codes`); the
    layout is the samples' step layout (`labels.step_layout`), what `reward_model_scores`
    scores."""
    e = config.eval
    task = get_task(config.task_name, config.task)
    problems = distinct_held_out_problems(task, e.num_problems, EVAL_SEED_OFFSET)
    model, params = load_stage_model(sft_dir, heads=("lm",), mesh=mesh)
    pool = sample_pool(
        model,
        params,
        task,
        {k: v for k, v in problems.items() if k != "answer"},
        jax.random.fold_in(jax.random.key(seed), EVAL_SEED_OFFSET),
        pool_size=e.num_samples,
        max_new_tokens=e.max_new_tokens,
        temperature=e.temperature,
    )
    width = problems["prompt_tokens"].shape[1]
    responses = [
        row[width:][keep[width:] > 0].tolist()
        for row, keep in zip(pool["tokens"], pool["loss_mask"], strict=True)
    ]
    prompts = [task.encode_text(text) for text in prompt_texts(task, problems)]
    repeated = [p for p in prompts for _ in range(e.num_samples)]
    checked = [task.step_labels(p, r) for p, r in zip(repeated, responses, strict=True)]
    out = {"correct": pool["gold"] > 0.5, **answer_codes(task, prompts, responses, e.num_samples)}
    out["sound"] = np.array([all(steps) for steps in checked]).reshape(out["correct"].shape)
    return out, labels.step_layout(task, repeated, responses, checked)


def answer_codes(task, prompts, responses, pool_size: int) -> dict[str, np.ndarray]:
    """Per problem, its samples' final answers as codes (the order they first appear in) and
    the true answer's code (-1 when no sample gives it): what majority voting counts. A sample
    gives an answer only in the verifier's form (it ends with EOS and writes out the solution's
    number of steps; -1 otherwise), so that a vote for the true answer is a vote of samples the
    verifier accepts, as every other selector's accuracy is the verifier's."""
    answers = np.full((len(prompts), pool_size), -1, np.int64)
    truth = np.full(len(prompts), -1, np.int64)
    for p, prompt in enumerate(prompts):
        solution = task.answer_of(prompt)
        codes: dict[str, int] = {}
        for j, response in enumerate(responses[p * pool_size : (p + 1) * pool_size]):
            if not response or response[-1] != task.eos_id:
                continue
            text = task.decode(response[:-1])
            if text.count("=") == solution.count("="):
                answers[p, j] = codes.setdefault(final_answer(text), len(codes))
        truth[p] = codes.get(final_answer(solution), -1)
    return {"answers": answers, "truth": truth}


def reward_model_scores(
    stage_dir: Path, layout: dict, how: str, mesh, chunk_size: int = 2048
) -> np.ndarray:
    """[rows] the solution scores (`how`: min | product | last, `solution_scores`) that the
    process or outcome reward model of the stage in `stage_dir` gives the rows of a step layout
    (tokens, input_mask, step_mask), in chunks of `chunk_size` rows."""
    model, params = load_stage_model(stage_dir, heads=("value",), mesh=mesh)
    values = jax.jit(
        lambda params, tokens, mask, step_mask: solution_scores(
            model.apply(params, tokens, mask, heads=("value",))["values"], step_mask, how
        )
    )
    return score_in_chunks(
        lambda tokens, mask, step_mask: values(params, tokens, mask, step_mask),
        layout["tokens"],
        layout["input_mask"],
        min(chunk_size, len(layout["tokens"])),
        step_mask=layout["step_mask"],
    )


def seed_table(outcomes: dict, ns: list[int], *, vote_draws: int, seed: int) -> dict:
    """One seed's best-of-n accuracy {selector: {"n": accuracy}} (mean over problems) from its
    pool: `correct` [P, N], `answers` and `truth` (codes for majority voting) and each reward
    model's `<name>_scores` [P, N]; under "sound", the share of each reward model's picks whose
    every step is right (`sound` [P, N], by the step checker); its reward models' held-out
    metrics from their stages (`<name>_<metric>`)."""
    correct = np.asarray(outcomes["correct"], np.float64)
    pool = correct.shape[1]
    rng = np.random.default_rng([seed, 17])
    table = {
        "oracle": {
            str(n): float(pass_at_k(correct.sum(1).astype(int), pool, n).mean()) for n in ns
        },
        "majority": {
            str(n): float(
                majority_vote_accuracy(
                    outcomes["answers"], outcomes["truth"], n, draws=vote_draws, rng=rng
                ).mean()
            )
            for n in ns
        },
    }
    sound = np.asarray(outcomes["sound"], np.float64)
    table["sound"] = {}
    for name in REWARD_MODELS:
        scores = outcomes[f"{name}_scores"]
        table[name] = {
            str(n): float(best_of_n_per_prompt(scores, correct, n)[1].mean()) for n in ns
        }
        table["sound"][name] = {
            str(n): float(best_of_n_per_prompt(scores, sound, n)[1].mean()) for n in ns
        }
    table["models"] = {
        name: {m: float(outcomes[f"{name}_{m}"]) for m in MODEL_METRICS} for name in REWARD_MODELS
    }
    return table


def aggregate(tables: dict, ns: list[int], small_n: int) -> dict:
    """Across seeds (mean, 95% t-interval half-width): each selector's accuracy at each n, the
    paired DIFFERENCES at each n, and each difference's widening (at the largest n less at
    `small_n`); each reward model's change from n = 1 to the largest n and the share of its
    picks with every step right; the reward models' held-out metrics. Keys of n are strings,
    as in JSON."""
    seeds = list(tables.values())
    ns = [str(n) for n in ns]
    out = {name: {n: mean_interval([t[name][n] for t in seeds]) for n in ns} for name in SELECTORS}
    out["differences"], out["widening"] = {}, {}
    for first, second in DIFFERENCES:
        key = difference_name(first, second)
        per_seed = {n: [t[first][n] - t[second][n] for t in seeds] for n in ns}
        out["differences"][key] = {n: mean_interval(v) for n, v in per_seed.items()}
        out["widening"][key] = mean_interval(
            np.subtract(per_seed[ns[-1]], per_seed[str(small_n)]).tolist()
        )
    # Each reward model's pick at the largest n against at n = 1 (the policy's own accuracy),
    # and the share of its picks with every step right.
    out["change"] = {
        name: mean_interval([t[name][ns[-1]] - t[name]["1"] for t in seeds])
        for name in REWARD_MODELS
    }
    out["sound"] = {
        name: {n: mean_interval([t["sound"][name][n] for t in seeds]) for n in ns}
        for name in REWARD_MODELS
    }
    out["models"] = {
        name: {m: mean_interval([t["models"][name][m] for t in seeds]) for m in MODEL_METRICS}
        for name in REWARD_MODELS
    }
    return out


def figure(combined: dict, ns: list[int], num_seeds: int, directory: Path) -> None:
    """Best-of-n accuracy against n for every selector (mean ± 95% CI over seeds), and the
    paired differences against n, as PNG and PDF in `directory`."""
    fig, (left, right) = plots.subplots(1, 2, figsize=(10, 3.6))
    for i, (name, label) in enumerate(SELECTORS.items()):
        oracle = name == "oracle"
        plots.intervals(
            left,
            ns,
            [combined[name][str(n)] for n in ns],
            fmt="--" if oracle else "o-",
            color="black" if oracle else plots.series_color(i - 1),
            markersize=4,
            label=label,
        )
    for i, (first, second) in enumerate(DIFFERENCES):
        plots.intervals(
            right,
            ns,
            [combined["differences"][difference_name(first, second)][str(n)] for n in ns],
            fmt="o-",
            color=plots.series_color((4, 5, 7, 1)[i]),  # yellow (6) is too pale for lines
            markersize=4,
            label=f"{SELECTORS[first]} - {SELECTORS[second]}",
        )
    right.axhline(0.0, color="black", linewidth=0.8)
    for ax, ylabel in ((left, "accuracy of the pick"), (right, "difference in accuracy")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set(xlabel="n (samples per problem)", ylabel=ylabel)
        ax.legend(fontsize=7)
    left.set_title(f"best-of-n on held-out problems ({num_seeds} seeds)")
    right.set_title("paired differences, mean ± 95% CI")
    plots.save(fig, directory / "best_of_n")
