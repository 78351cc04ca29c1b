"""RLVR on arithmetic: does GRPO raise pass@k at large k, or only pass@1 (sharpening)?

    python -m experiments.rlvr --config configs/rlvr.py --workdir runs/rlvr

Stages (each in <workdir>/seed<k>/<stage>, each resumable), for every seed in `config.seeds`:
  1. sft   the arithmetic task's exact-answer demonstrations, training problems only
  2. grpo  GRPO from the SFT policy with the task's exact-match verifier (the grpo stage)
  3. eval  for the SFT and the GRPO policy: `eval.num_samples` samples at temperature 1 on
           each of `eval.num_problems` distinct held-out problems (an operand combination of the
           eval split is never in training), verified by the task's checker; pass@k for
           `eval.ks` with the unbiased estimator (alignax/analysis/pass_at_k.py), coverage
           (pass@n) and greedy accuracy. Cached in <workdir>/seed<k>/eval.npz.
The report gives, per k, pass@k before and after GRPO and the paired change, mean over seeds with
95% t-intervals, and the answer computed from them by the rule in `pass_at_k.classify_change`
(stated in results.md). results.json holds every seed's numbers and per-problem counts.

Yue et al. (2025, "Does reinforcement learning really incentivize reasoning capacity in LLMs
beyond the base model?") report that RLVR raises pass@1 while the base model's pass@k at large k
matches or exceeds the RL model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from alignax.analysis import plots
from alignax.analysis.pass_at_k import classify_change, coverage, mean_pass_at_k
from alignax.analysis.policy_eval import EVAL_SEED_OFFSET, evaluate_policy, sample_pool
from alignax.analysis.stats import interval_text, mean_interval, seed_means, standard_error
from alignax.cli import run_experiment
from alignax.models import build_model
from alignax.provenance import written_by
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model
from alignax.study import PlannedStage, Study, seed_stage_config, wall_time_text
from alignax.tasks import get_task
from alignax.workdir import stage_fingerprint
from alignax.workflows import online, sft

STAGES = {"sft": sft.KIND, "grpo": online.KIND}
POLICIES = ("sft", "grpo")


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    links = {"sft": {}, "grpo": {"init_from": seed_dir / "sft"}}
    return [
        PlannedStage(name, kind, seed_stage_config(config, name, seed, links[name]))
        for name, kind in STAGES.items()
    ]


def held_out_problems(task, num_problems: int) -> dict[str, np.ndarray]:
    """`num_problems` distinct problems of the eval split (first occurrences of a draw), the same
    for every seed so per-problem results line up."""
    draw = task.prompt_dataset(16 * num_problems, seed=EVAL_SEED_OFFSET, split="eval")
    _, first = np.unique(draw["prompt_tokens"], axis=0, return_index=True)
    if len(first) < num_problems:
        raise ValueError(
            f"eval.num_problems={num_problems}, but only {len(first)} distinct held-out problems "
            f"turned up in {16 * num_problems} draws of the eval split"
        )
    rows = np.sort(first)[:num_problems]
    return {k: v[rows] for k, v in draw.items()}


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """Which samples are correct [P, n] and greedy correctness [P] for each policy on the
    held-out problems; from the cache when it was written with the same evaluation settings on
    the same stages (their fingerprints: checkpoint step, config and upstream)."""
    stages = {name: stage_fingerprint(seed_dir / name) for name in POLICIES}
    path = seed_dir / "eval.npz"
    outputs = ("correct", "greedy", "held-out kl")  # what the cache holds
    settings = json.dumps(
        {**config.eval.to_dict(), "stages": stages, "outputs": outputs}, sort_keys=True
    )
    if path.exists():
        cached = dict(np.load(path, allow_pickle=False))
        if str(cached.pop("settings")) == settings:
            return cached
    e = config.eval
    mesh = make_mesh(config.mesh)
    task = get_task(config.task_name, config.task)
    problems = held_out_problems(task, e.num_problems)
    model = build_model(config.model, heads=("lm",))
    prompts = {k: v for k, v in problems.items() if k != "answer"}
    # The same key for both policies: paired draws, so the change is measured with less noise.
    rng = jax.random.fold_in(jax.random.key(seed), EVAL_SEED_OFFSET)
    out, params = {}, {}
    for name in POLICIES:
        params[name] = load_stage_model(seed_dir / name, heads=("lm",), mesh=mesh)[1]
        pool = sample_pool(
            model,
            params[name],
            task,
            prompts,
            rng,
            pool_size=e.num_samples,
            max_new_tokens=e.max_new_tokens,
        )
        out[f"{name}_correct"] = pool["gold"] > 0.5  # the verifier's reward is 1 or 0
        greedy = evaluate_policy(
            model,
            params[name],
            task,
            prompts,
            rng,
            max_new_tokens=e.max_new_tokens,
            temperature=0.0,
        )
        out[f"{name}_greedy"] = greedy["gold"].astype(np.float64)
    # GRPO's KL to SFT on the held-out problems (one temperature-1 sample each, the k1 estimate
    # of the sequence KL), not on its last training batch.
    out["grpo_kl"] = evaluate_policy(
        model,
        params["grpo"],
        task,
        prompts,
        jax.random.fold_in(rng, 1),
        max_new_tokens=e.max_new_tokens,
        ref_params=params["sft"],
    )["kl"]
    np.savez(path, settings=settings, **out)
    return out


def seed_table(config, outcomes: dict) -> dict:
    """policy -> {"pass@k": value for each k, "coverage", "greedy"} for one seed."""
    table = {}
    for name in POLICIES:
        correct = outcomes[f"{name}_correct"]
        row = {f"pass@{k}": v for k, v in mean_pass_at_k(correct, config.eval.ks).items()}
        row["coverage"] = coverage(correct)
        row["greedy"] = float(outcomes[f"{name}_greedy"].mean())
        table[name] = row
    return table


def aggregate(tables: dict) -> dict:
    """policy (and "change" = grpo - sft, paired within each seed) -> metric -> (mean, 95%
    half-width) over seeds."""
    change = {
        seed: {"change": {m: t["grpo"][m] - t["sft"][m] for m in t["sft"]}}
        for seed, t in tables.items()
    }
    return {**seed_means(tables), **seed_means(change)}


def held_out_kl(outcomes: dict) -> dict:
    """GRPO's KL to SFT on the held-out problems: mean and standard error over problems."""
    kl = np.asarray(outcomes["grpo_kl"], np.float64)
    return {"mean": float(kl.mean()), "se": standard_error(kl)}


# ---------------------------------------------------------------------------------------------
# Figures and the report.


def crossover_k(ks, mean_changes) -> int | None:
    """The smallest k from which every mean change in pass@k is <= 0 (None if the last is > 0)."""
    crossover = None
    for k, change in zip(reversed(ks), reversed(mean_changes)):
        if change > 0:
            break
        crossover = k
    return crossover


def figures(config, tables: dict, combined: dict, workdir: Path) -> None:
    ks = list(config.eval.ks)
    labels = {"sft": "before (SFT)", "grpo": "after (GRPO)"}
    fig, ax = plots.subplots(figsize=(4.8, 3.4))
    for i, name in enumerate(POLICIES):
        color = plots.series_color(i)
        for table in tables.values():
            ax.plot(ks, [table[name][f"pass@{k}"] for k in ks], "-", color=color, alpha=0.25)
        ax.errorbar(
            [k * (0.96 if name == "sft" else 1.04) for k in ks],  # apart, so both bars show
            [combined[name][f"pass@{k}"][0] for k in ks],
            yerr=[combined[name][f"pass@{k}"][1] for k in ks],
            fmt="o-",
            color=color,
            markersize=4,
            capsize=3,
            label=f"{labels[name]}, mean ± 95% CI",
        )
    ax.plot([], [], "-", color="grey", alpha=0.4, label="single seeds")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set(
        xlabel="k (samples per problem)",
        ylabel="pass@k (held-out problems)",
        title=f"pass@k before and after GRPO ({len(tables)} seeds)",
    )
    ax.legend(loc="lower right")
    plots.save(fig, workdir / "figures" / "pass_at_k")

    fig, ax = plots.subplots(figsize=(4.8, 3.4))
    changes = [combined["change"][f"pass@{k}"] for k in ks]
    for table in tables.values():
        ax.plot(
            ks,
            [table["grpo"][f"pass@{k}"] - table["sft"][f"pass@{k}"] for k in ks],
            "-",
            color=plots.PALETTE[2],
            alpha=0.25,
        )
    ax.errorbar(
        ks,
        [m for m, _ in changes],
        yerr=[h for _, h in changes],
        fmt="o-",
        color=plots.PALETTE[2],
        markersize=4,
        capsize=3,
        label="GRPO - SFT, mean ± 95% CI",
    )
    ax.plot([], [], "-", color=plots.PALETTE[2], alpha=0.4, label="single seeds")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set(
        xlabel="k (samples per problem)",
        ylabel="change in pass@k",
        title="What GRPO changes, per k",
    )
    ax.legend()
    plots.save(fig, workdir / "figures" / "pass_at_k_change")


def report(config, results: dict, timings: dict, prov: dict) -> str:
    e, ks = config.eval, config.eval.ks
    tables, combined, answer = results["seeds"], results["combined"], results["answer"]
    seeds = ", ".join(map(str, tables))
    kl = mean_interval([seed["mean"] for seed in results["grpo_held_out_kl"].values()])
    lines = [
        "### RLVR on arithmetic: pass@k before and after GRPO",
        "",
        f"{written_by(prov)}; {len(tables)} seeds ({seeds}) on {config.workers} process(es); "
        f"{wall_time_text(timings)}.",
        "",
        f"Per seed: SFT ({config.stages.sft.train.steps} steps) -> GRPO "
        f"({config.stages.grpo.train.steps} steps of {config.stages.grpo.train.batch_size} "
        f"prompts x {config.stages.grpo.rollout.group_size} samples; KL to SFT on the held-out "
        f"problems {interval_text(kl)} nats, one sample per problem). Each policy answers "
        f"{e.num_problems} distinct held-out "
        "problems "
        f"(operand combinations never trained on) with {e.num_samples} samples at temperature 1; "
        "the exact-match checker decides. pass@k is the unbiased estimator "
        "1 - C(n-c, k) / C(n, k); coverage is the share of problems any of the n samples solves. "
        "Mean over seeds ± 95% t-interval; the change is paired within each seed.",
        "",
        "| k | before (SFT) | after (GRPO) | change |",
        "|---|---|---|---|",
    ]
    for k in ks:
        key = f"pass@{k}"
        lines.append(
            f"| {k} | {interval_text(combined['sft'][key])} | "
            f"{interval_text(combined['grpo'][key])} | "
            f"{interval_text(combined['change'][key], signed=True)} |"
        )
    for key, label in (("coverage", f"coverage (pass@{e.num_samples})"), ("greedy", "greedy")):
        lines.append(
            f"| {label} | {interval_text(combined['sft'][key])} | "
            f"{interval_text(combined['grpo'][key])} | "
            f"{interval_text(combined['change'][key], signed=True)} |"
        )
    crossover = crossover_k(ks, [combined["change"][f"pass@{k}"][0] for k in ks])
    crossing = (
        f"GRPO's mean pass@k is at or below SFT's from k = {crossover} on."
        if crossover is not None
        else ""
    )
    lines += [
        "",
        f"**Answer: {answer['verdict']}.** {answer['explanation']} {crossing}".rstrip(),
        "",
        f"Rule: {answer['rule']}",
    ]
    return "\n".join(lines) + "\n"


def task_prompts(task, problems: dict) -> list[str]:
    """The problems as text ("12+7="), for the per-problem view in results.json."""
    return [
        task.decode(row[mask > 0])
        for row, mask in zip(problems["prompt_tokens"], problems["prompt_mask"])
    ]


def analyse(config, seeds: dict, workdir: Path) -> dict:
    """Per seed and across seeds (mean, 95% interval): pass@k, coverage and greedy accuracy of
    both policies and their paired change; the answer by `classify_change`; the figures."""
    task = get_task(config.task_name, config.task)
    tables = {seed: seed_table(config, outcomes) for seed, outcomes in seeds.items()}
    combined = aggregate(tables)
    ks = list(config.eval.ks)
    answer = classify_change(
        combined["change"]["pass@1"], combined["change"][f"pass@{max(ks)}"], largest_k=max(ks)
    )
    figures(config, tables, combined, workdir)
    return {
        "ks": ks,
        "num_samples": config.eval.num_samples,
        "problems": task_prompts(task, held_out_problems(task, config.eval.num_problems)),
        "seeds": {str(s): t for s, t in tables.items()},
        "combined": combined,
        "answer": answer,
        "crossover_k": crossover_k(ks, [combined["change"][f"pass@{k}"][0] for k in ks]),
        "grpo_held_out_kl": {str(s): held_out_kl(c) for s, c in seeds.items()},
        "per_problem_correct": {
            str(s): {name: c[f"{name}_correct"].sum(1).tolist() for name in POLICIES}
            for s, c in seeds.items()
        },
    }


PAPER = "Yue et al. (2025)"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    change, k = results["combined"]["change"], max(results["ks"])
    return [
        f"**{results['answer']['verdict']}**: pass@1 "
        f"{interval_text(change['pass@1'], signed=True)}, pass@{k} "
        f"{interval_text(change[f'pass@{k}'], signed=True)} after GRPO"
    ]


def summarize(results: dict) -> dict:
    return {
        "verdict": results["answer"]["verdict"],
        **{f"change/{k}": mean for k, (mean, _) in results["combined"]["change"].items()},
    }


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
