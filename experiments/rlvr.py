"""RLVR on arithmetic: does GRPO raise pass@k at large k, or only pass@1 (sharpening)?

    python -m experiments.rlvr --config configs/rlvr.py --workdir runs/rlvr

Stages (each in <workdir>/seed<k>/<stage>, each resumable), for every seed in `config.seeds`:
  1. sft   the arithmetic task's demonstrations (worked solutions), training problems only
  2. grpo  GRPO from the SFT policy with the task's verifier (the grpo stage)
  3. eval  for the SFT and the GRPO policy: `eval.num_samples` samples at temperature 1 on
           each of `eval.num_problems` distinct held-out problems (no problem of the eval split,
           nor its commuted twin, is in training), verified by the task's checker; the same at
           each of `eval.sweep_temperatures` with `eval.sweep_samples` samples; greedy accuracy.
           Cached in <workdir>/seed<k>/eval.npz.
The analysis: pass@k for `eval.ks` with the unbiased estimator (alignax/analysis/pass_at_k.py)
before and after GRPO and the paired change, mean over seeds with 95% t-intervals; beside them
a guesser that ignores the problem and draws answers from the answers of `eval.answer_draws`
training problems; the per-problem solvable sets (problems some sample solves under SFT only,
GRPO only, both, neither); and the answer computed by the rule in `pass_at_k.classify_change`
(stated in results.md) at temperature 1 and at each swept temperature. results.json holds every
seed's numbers and per-problem counts.

Yue et al. (2025, "Does reinforcement learning really incentivize reasoning capacity in LLMs
beyond the base model?") report that RLVR raises pass@1 while the base model's pass@k at large k
matches or exceeds the RL model's.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from alignax.analysis.pass_at_k import (
    answer_shares,
    classify_change,
    crossover_k,
    guessing_pass_at_k,
)
from alignax.analysis.policy_eval import (
    EVAL_SEED_OFFSET,
    distinct_held_out_problems,
    evaluate_policy,
    prompt_texts,
    sample_pool,
)
from alignax.analysis.report import table
from alignax.analysis.sharpening import (
    POLICIES,
    aggregate,
    figures,
    seed_table,
    sweep_ks,
    temperature_key,
    verdicts,
)
from alignax.analysis.stats import interval_text, mean_interval, standard_error
from alignax.cli import run_experiment
from alignax.models import build_model
from alignax.provenance import written_by
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model
from alignax.study import (
    PlannedStage,
    Study,
    check_solution_room,
    seed_stage_config,
    wall_time_text,
)
from alignax.tasks import get_task
from alignax.tasks.arithmetic import final_answer
from alignax.workdir import cached_arrays, stage_fingerprint
from alignax.workflows import online, sft

STAGES = {"sft": sft.KIND, "grpo": online.KIND}


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    check_solution_room(
        config,
        (
            "eval.max_new_tokens",
            "stages.sft.eval.max_new_tokens",
            "stages.grpo.rollout.max_new_tokens",
        ),
    )
    links = {"sft": {}, "grpo": {"init_from": seed_dir / "sft"}}
    return [
        PlannedStage(name, kind, seed_stage_config(config, name, seed, links[name]))
        for name, kind in STAGES.items()
    ]


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """Per policy, the correct samples of each held-out problem [P] at temperature 1 (`counts`)
    and at each swept temperature (`sweep_counts` [T, P]), greedy correctness [P], and GRPO's
    KL to SFT on the problems; from the cache when it was made with the same evaluation settings
    from the same stages (their fingerprints: checkpoint step, config and upstream)."""
    key = {
        "eval": config.eval.to_dict(),
        "stages": {name: stage_fingerprint(seed_dir / name) for name in POLICIES},
    }
    return cached_arrays(seed_dir / "eval.npz", key, lambda: measure_seed(config, seed, seed_dir))


def measure_seed(config, seed: int, seed_dir: Path) -> dict[str, np.ndarray]:
    """What `evaluate_seed` returns, measured."""
    e = config.eval
    mesh = make_mesh(config.mesh)
    task = get_task(config.task_name, config.task)
    problems = distinct_held_out_problems(task, e.num_problems, EVAL_SEED_OFFSET)
    model = build_model(config.model, heads=("lm",))
    prompts = {k: v for k, v in problems.items() if k != "answer"}
    # The same key for both policies: paired draws, so the change is measured with less noise.
    rng = jax.random.fold_in(jax.random.key(seed), EVAL_SEED_OFFSET)

    def correct_counts(params, temperature: float, num_samples: int, key) -> np.ndarray:
        pool = sample_pool(
            model,
            params,
            task,
            prompts,
            key,
            pool_size=num_samples,
            max_new_tokens=e.max_new_tokens,
            temperature=temperature,
        )
        return (pool["gold"] > 0.5).sum(axis=1)  # the verifier's reward is 1 or 0

    out, params = {}, {}
    for name in POLICIES:
        params[name] = load_stage_model(seed_dir / name, heads=("lm",), mesh=mesh)[1]
        out[f"{name}_counts"] = correct_counts(params[name], 1.0, e.num_samples, rng)
        out[f"{name}_sweep_counts"] = np.stack(
            [
                correct_counts(params[name], t, e.sweep_samples, jax.random.fold_in(rng, 2 + i))
                for i, t in enumerate(e.sweep_temperatures)
            ]
        )
        greedy = evaluate_policy(
            model,
            params[name],
            task,
            prompts,
            rng,
            max_new_tokens=e.max_new_tokens,
            temperature=0.0,
            monitor=False,
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
        monitor=False,
    )["kl"]
    return out


def guessing(config, task, problems: dict) -> dict[str, float]:
    """pass@k of the problem-blind guesser on the held-out `problems`: it draws each answer from
    the answers of `eval.answer_draws` training problems (`guessing_pass_at_k`)."""
    train = task.sample_problems(config.eval.answer_draws, seed=0, split="train")
    p = answer_shares(
        [final_answer(s) for s in problems["answer"]], [final_answer(s) for _, s in train]
    )
    return {f"pass@{k}": v for k, v in guessing_pass_at_k(p, config.eval.ks).items()}


def held_out_kl(outcomes: dict) -> dict:
    """GRPO's KL to SFT on the held-out problems: mean and standard error over problems."""
    kl = np.asarray(outcomes["grpo_kl"], np.float64)
    return {"mean": float(kl.mean()), "se": standard_error(kl)}


# ---------------------------------------------------------------------------------------------
# Figures and the report.


def report(config, results: dict, timings: dict, prov: dict) -> str:
    e, ks, c = config.eval, config.eval.ks, config.task
    tables, combined, answers = results["seeds"], results["combined"], results["answers"]
    guess, solvable = results["guessing"], combined["solvable"]
    seeds = ", ".join(map(str, tables))
    kl = mean_interval([seed["mean"] for seed in results["grpo_held_out_kl"].values()])
    largest, swept = max(ks), max(sweep_ks(config.eval))
    lines = [
        "### RLVR on multi-step arithmetic: pass@k before and after GRPO",
        "",
        f"{written_by(prov)}; {len(tables)} seeds ({seeds}) on {config.workers} process(es); "
        f"{wall_time_text(timings)}.",
        "",
        f"The task: {c.num_steps} operations ({' '.join(c.operators)}) on operands "
        f"{c.min_operand}..{c.max_operand}, evaluated left to right, the solution writing out "
        'each step ("3+4*2-5=" -> "7*2-5=14-5=9"); the verifier checks the answer after the '
        'last "=". Held-out problems are split from training ones by commutation class (no '
        "held-out problem's commuted twin is trained on). "
        f"Per seed: SFT ({config.stages.sft.train.steps} steps) -> GRPO "
        f"({config.stages.grpo.train.steps} steps of {config.stages.grpo.train.batch_size} "
        f"prompts x {config.stages.grpo.rollout.group_size} samples; KL to SFT on the held-out "
        f"problems {interval_text(kl)} nats, one sample per problem). Each policy answers "
        f"{e.num_problems} distinct held-out problems with {e.num_samples} samples at "
        "temperature 1. pass@k is the unbiased estimator 1 - C(n-c, k) / C(n, k); coverage is "
        "the share of problems any of the n samples solves. The guesser ignores the problem and "
        f"draws each answer from the answers of {e.answer_draws} training problems: pass@k "
        "below its curve shows no skill at that k. Mean over seeds ± 95% t-interval; the "
        "change is paired within each seed.",
        "",
    ]

    def before_after(key: str) -> list[str]:
        return [
            interval_text(combined["sft"][key]),
            interval_text(combined["grpo"][key]),
            interval_text(combined["change"][key], signed=True),
        ]

    rows = [[k, f"{guess[f'pass@{k}']:.3f}", *before_after(f"pass@{k}")] for k in ks]
    rows += [
        [label, "-", *before_after(key)]
        for key, label in (("coverage", f"coverage (pass@{e.num_samples})"), ("greedy", "greedy"))
    ]
    lines += table(("k", "guesser", "before (SFT)", "after (GRPO)", "change"), rows)
    answer = answers["1.0"]
    crossover = crossover_k(ks, [combined["change"][f"pass@{k}"][0] for k in ks])
    crossing = (
        f"GRPO's mean pass@k is at or below SFT's from k = {crossover} on."
        if crossover is not None
        else ""
    )
    headroom = 1.0 - combined["sft"][f"pass@{largest}"][0]
    lines += [
        "",
        f"**Answer at temperature 1: {answer['verdict']}.** {answer['explanation']} "
        f"{crossing}".rstrip(),
        f"SFT's pass@{largest} leaves {headroom:.3f} of room for broadening at k = {largest}.",
        "",
        f"Problems some of the {e.num_samples} samples solve (share of the {e.num_problems}, "
        f"temperature 1): under both policies {interval_text(solvable['both'])}, SFT only "
        f"{interval_text(solvable['sft only'])}, GRPO only "
        f"{interval_text(solvable['grpo only'])}, neither {interval_text(solvable['neither'])}.",
        "",
        f"By sampling temperature (at {', '.join(map(str, e.sweep_temperatures))}: "
        f"{e.sweep_samples} samples per problem; at 1: the samples above), with the answer by "
        f"the same rule at k = {swept}:",
        "",
    ]
    rows = []
    for t in sorted((1.0, *e.sweep_temperatures)):
        verdict = (
            classify_change(
                combined["change"]["pass@1"], combined["change"][f"pass@{swept}"], largest_k=swept
            )
            if t == 1.0
            else answers[str(t)]
        )["verdict"]
        cells = [cell for k in (1, swept) for cell in before_after(temperature_key(t, k))]
        rows.append([t, *cells, verdict])
    header = ["temperature", "pass@1 SFT", "pass@1 GRPO", "change"]
    header += [f"pass@{swept} SFT", f"pass@{swept} GRPO", "change", "answer"]
    lines += table(header, rows)
    lines += ["", f"Rule: {answer['rule']}"]
    return "\n".join(lines) + "\n"


def analyse(config, seeds: dict, workdir: Path) -> dict:
    """Per seed and across seeds (mean, 95% interval): pass@k, coverage and greedy accuracy of
    both policies at temperature 1 and pass@k at the swept temperatures, their paired change,
    the solvable sets; the guesser; the answers by `classify_change`; the figures."""
    task = get_task(config.task_name, config.task)
    problems = distinct_held_out_problems(task, config.eval.num_problems, EVAL_SEED_OFFSET)
    tables = {seed: seed_table(config.eval, outcomes) for seed, outcomes in seeds.items()}
    combined = aggregate(tables)
    ks = list(config.eval.ks)
    answers = verdicts(config.eval, combined)
    results = {
        "ks": ks,
        "num_samples": config.eval.num_samples,
        "sweep_temperatures": list(config.eval.sweep_temperatures),
        "sweep_samples": config.eval.sweep_samples,
        "problems": prompt_texts(task, problems),
        "guessing": guessing(config, task, problems),
        "seeds": {str(s): t for s, t in tables.items()},
        "combined": combined,
        "answer": answers["1.0"],
        "answers": answers,
        "crossover_k": crossover_k(ks, [combined["change"][f"pass@{k}"][0] for k in ks]),
        "grpo_held_out_kl": {str(s): held_out_kl(c) for s, c in seeds.items()},
        "per_problem_correct": {
            str(s): {name: np.asarray(c[f"{name}_counts"]).tolist() for name in POLICIES}
            for s, c in seeds.items()
        },
    }
    figures(results, sweep_ks(config.eval), workdir / "figures")
    return results


PAPER = "Yue et al. (2025)"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    change, k = results["combined"]["change"], max(results["ks"])
    return [
        f"**{results['answer']['verdict']}**: pass@1 "
        f"{interval_text(change['pass@1'], signed=True)}, pass@{k} "
        f"{interval_text(change[f'pass@{k}'], signed=True)} after GRPO (3-step problems)"
    ]


def summarize(results: dict) -> dict:
    return {
        "verdict": results["answer"]["verdict"],
        **{f"change/{k}": mean for k, (mean, _) in results["combined"]["change"].items()},
    }


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
