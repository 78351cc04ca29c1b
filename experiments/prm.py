"""Process against outcome reward models: which picks the right solution from n samples?

    python -m experiments.prm --config configs/prm.py --workdir runs/prm

Stages (each in <workdir>/seed<k>/<stage>, each resumable), for every seed in `config.seeds`:
  1. sft              the arithmetic task's demonstrations (worked solutions), training problems
  2. prm_checker      a process reward model on the SFT policy's solutions to training
                      problems, every step labelled by the task's step checker
  3. prm_monte_carlo  the same solutions, every step labelled by the share of rollouts of the
                      SFT policy from it that reach a verified answer
  4. orm              the same solutions, labelled by the verifier at the last step only
  5. eval             `eval.num_samples` samples of the SFT policy on each of `eval.num_problems`
                      distinct held-out problems, scored by the three reward models, with their
                      final answers and the verifier's outcome. Cached in <workdir>/seed<k>/
                      eval.npz.
The analysis (alignax/analysis/verifiers.py): best-of-n accuracy for n = 1, 2, 4, ... up to the
pool, for each reward model's pick, majority voting and the oracle; the paired differences per
seed, mean over seeds with 95% t-intervals, and the answers to the criteria of configs/prm.py.

Lightman et al. (2023, "Let's verify step by step") find that a PRM trained on human step labels
picks right more often than an ORM, by a gap that widens with n; Wang et al. (2024,
Math-Shepherd) label steps by Monte Carlo rollouts instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from alignax.analysis.best_of_n import powers_of_two
from alignax.analysis.policy_eval import (
    EVAL_SEED_OFFSET,
    distinct_held_out_problems,
    prompt_texts,
)
from alignax.analysis.report import intervals, table
from alignax.analysis.stats import interval_text, interval_verdict
from alignax.analysis.verifiers import (
    DIFFERENCES,
    MODEL_METRICS,
    REWARD_MODELS,
    SELECTORS,
    aggregate,
    difference_name,
    figure,
    reward_model_scores,
    seed_table,
    solution_pool,
)
from alignax.cli import run_experiment
from alignax.provenance import written_by
from alignax.sharding import make_mesh
from alignax.study import (
    PlannedStage,
    Study,
    check_solution_room,
    seed_stage_config,
    wall_time_text,
)
from alignax.tasks import get_task
from alignax.workdir import cached_arrays, stage_fingerprint
from alignax.workflows import process_reward, sft

STAGES = {"sft": sft.KIND, **{name: process_reward.KIND for name in REWARD_MODELS}}


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    check_solution_room(
        config,
        (
            "eval.max_new_tokens",
            "stages.sft.eval.max_new_tokens",
            *(f"stages.{name}.labels.max_new_tokens" for name in REWARD_MODELS),
        ),
    )
    if config.eval.small_n not in powers_of_two(config.eval.num_samples)[:-1]:
        raise ValueError(
            f"eval.small_n={config.eval.small_n}: must be a power of two below "
            f"eval.num_samples={config.eval.num_samples} (an n the curves are read at)"
        )
    policy = {"init_from": seed_dir / "sft", "labels.policy_from": seed_dir / "sft"}
    links = {"sft": {}, **{name: policy for name in REWARD_MODELS}}
    return [
        PlannedStage(name, kind, seed_stage_config(config, name, seed, links[name]))
        for name, kind in STAGES.items()
    ]


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """`measure_seed`, from the cache when it was made with the same evaluation settings from
    the same stages (their fingerprints: checkpoint step, config and upstream)."""
    key = {
        "eval": config.eval.to_dict(),
        "stages": {name: stage_fingerprint(seed_dir / name) for name in STAGES},
    }
    return cached_arrays(seed_dir / "eval.npz", key, lambda: measure_seed(config, seed, seed_dir))


def measure_seed(config, seed: int, seed_dir: Path) -> dict[str, np.ndarray]:
    """The SFT policy's pool on the held-out problems (`verifiers.solution_pool`: `correct`,
    `sound`, `answers`, `truth`), each reward model's solution scores (`<name>_scores`
    [P, N]) and its stage's held-out metrics (`<name>_<metric>`)."""
    mesh = make_mesh(config.mesh)
    out, layout = solution_pool(config, seed, seed_dir / "sft", mesh)
    shape = out["correct"].shape
    for name in REWARD_MODELS:
        how = config.stages[name].process.solution_score
        out[f"{name}_scores"] = reward_model_scores(seed_dir / name, layout, how, mesh).reshape(
            shape
        )
        summary = json.loads((seed_dir / name / "summary.json").read_text())
        out |= {f"{name}_{m}": np.float64(summary[m]) for m in MODEL_METRICS}
    return out


def analyse(config, seeds: dict, workdir: Path) -> dict:
    """Per seed and across seeds (mean, 95% interval): best-of-n accuracy of each selector, the
    paired differences and their widening, the reward models' held-out metrics; the answers to
    the criteria; the figure."""
    e = config.eval
    ns = powers_of_two(e.num_samples)
    tables = {
        str(seed): seed_table(outcomes, ns, vote_draws=e.vote_draws, seed=seed)
        for seed, outcomes in seeds.items()
    }
    combined = aggregate(tables, ns, e.small_n)
    task = get_task(config.task_name, config.task)
    results = {
        "ns": ns,
        "num_samples": e.num_samples,
        "problems": prompt_texts(
            task, distinct_held_out_problems(task, e.num_problems, EVAL_SEED_OFFSET)
        ),
        "seeds": tables,
        "combined": combined,
        "answers": answers(combined, ns, e.small_n),
        "per_problem_correct": {
            str(s): np.asarray(o["correct"]).sum(axis=1).tolist() for s, o in seeds.items()
        },
    }
    figure(combined, ns, len(tables), workdir / "figures")
    return results


def answers(combined: dict, ns: list[int], small_n: int) -> dict[str, str]:
    """The criteria of configs/prm.py, answered from the intervals."""
    widening = combined["widening"]

    def at(first: str, second: str) -> tuple[float, float]:
        return combined["differences"][difference_name(first, second)][str(ns[-1])]

    return {
        "prm_vs_orm": interval_verdict(at("prm_checker", "orm"), "PRM beats ORM", "ORM beats PRM"),
        "gap_widens": interval_verdict(
            widening[difference_name("prm_checker", "orm")], "widens", "narrows"
        ),
        "monte_carlo_vs_orm": interval_verdict(
            at("prm_monte_carlo", "orm"), "Monte Carlo PRM beats ORM", "ORM beats Monte Carlo PRM"
        ),
        "monte_carlo_gap_widens": interval_verdict(
            widening[difference_name("prm_monte_carlo", "orm")], "widens", "narrows"
        ),
        "prm_vs_majority": interval_verdict(
            at("prm_checker", "majority"), "PRM beats majority voting", "majority voting beats PRM"
        ),
    }


# ---------------------------------------------------------------------------------------------
# The report.


def report(config, results: dict, timings: dict, prov: dict) -> str:
    e, c, ns = config.eval, config.task, results["ns"]
    combined, answer, seeds = results["combined"], results["answers"], results["seeds"]
    rm = config.stages.prm_checker
    largest = str(ns[-1])
    lines = [
        "### Process against outcome reward models: best-of-n on multi-step arithmetic",
        "",
        f"{written_by(prov)}; {len(seeds)} seeds ({', '.join(seeds)}) on {config.workers} "
        f"process(es); {wall_time_text(timings)}.",
        "",
        f"The task: {c.num_steps} operations ({' '.join(c.operators)}) on operands "
        f"{c.min_operand}..{c.max_operand}, evaluated left to right, the solution writing out "
        "each step; a checker for every step and a verifier of the answer; held-out problems "
        "are split from training ones by commutation class. Per seed: SFT "
        f"({config.stages.sft.train.steps} steps), then three reward models from the SFT policy "
        f"on the same {rm.process.num_solutions} solutions it samples to training problems, "
        f"each {rm.train.steps} steps of batch {rm.train.batch_size}: the PRM on the step "
        "checker's labels, the PRM on Monte Carlo labels (the share of "
        f"{config.stages.prm_monte_carlo.process.num_rollouts} rollouts from each step that "
        "reach a verified answer), and the ORM on the verifier's label of the whole solution. "
        f"Best-of-n on {e.num_problems} distinct held-out problems from a pool of "
        f"{e.num_samples} SFT samples each at temperature {e.temperature}: a PRM picks by its "
        "weakest step, the ORM by its score at the last; majority voting counts the final "
        "answers of the samples in the verifier's form (ended, with the solution's number of "
        f"steps; {e.vote_draws} random n-subsets per problem and n); "
        "the oracle picks a right sample whenever one of the n is (pass@n). Accuracy is the "
        "verifier's; mean over seeds ± 95% t-interval, differences paired within each seed.",
        "",
    ]
    key = difference_name("prm_checker", "orm")
    rows = [
        [
            n,
            *(interval_text(combined[name][n]) for name in SELECTORS),
            interval_text(combined["differences"][key][n], signed=True),
        ]
        for n in map(str, ns)
    ]
    lines += table(["n", *SELECTORS.values(), "PRM (checker) - ORM"], rows)
    lines += [
        "",
        f"Paired differences at n = {largest} and their change from n = {e.small_n} "
        f"(the widening):",
        "",
    ]
    rows = []
    for first, second in DIFFERENCES:
        d = difference_name(first, second)
        rows.append(
            [
                f"{SELECTORS[first]} - {SELECTORS[second]}",
                interval_text(combined["differences"][d][str(e.small_n)], signed=True),
                interval_text(combined["differences"][d][largest], signed=True),
                interval_text(combined["widening"][d], signed=True),
            ]
        )
    lines += table(["difference", f"at n = {e.small_n}", f"at n = {largest}", "widening"], rows)
    lines += [
        "",
        f"Observed after the run (not a criterion stated before it): each reward model's pick "
        f"at n = {largest} against at n = 1 (the policy's own accuracy), and how many of its "
        "picks have every step right by the checker (the pool's share at n = 1):",
        "",
    ]
    header = ["reward model", f"change in accuracy, n = 1 -> {largest}"]
    header += ["picks with every step right, n = 1", f"at n = {largest}"]
    rows = [
        [
            label,
            interval_text(combined["change"][name], signed=True),
            *intervals(combined["sound"][name], [("1", 3), (largest, 3)]),
        ]
        for name, label in REWARD_MODELS.items()
    ]
    lines += table(header, rows)
    lines += [
        "",
        "The reward models on their stages' held-out solutions (SFT samples to held-out "
        "problems): step accuracy against the checker, the AUC of the solution score for "
        "telling verified solutions from the rest, and the mean of the model's own labels:",
        "",
    ]
    columns = [(metric, 3) for metric in MODEL_METRICS]
    rows = [
        [label, *intervals(combined["models"][name], columns)]
        for name, label in REWARD_MODELS.items()
    ]
    lines += table(["reward model", "step accuracy", "solution AUC", "label mean"], rows)
    lines += [
        "",
        "Criteria, stated before the run (configs/prm.py), answered from the intervals:",
        "",
        f"1. At n = {largest}, the PRM on checker labels against the ORM: "
        f"**{answer['prm_vs_orm']}**.",
        f"2. That gap from n = {e.small_n} to n = {largest}: **{answer['gap_widens']}**.",
        f"3. The PRM on Monte Carlo labels against the ORM at n = {largest}: "
        f"**{answer['monte_carlo_vs_orm']}**; its gap: **{answer['monte_carlo_gap_widens']}**.",
        f"4. The PRM on checker labels against majority voting at n = {largest}: "
        f"**{answer['prm_vs_majority']}**.",
        "",
        "Where the toy setting differs from the papers': a tiny model samples three-step "
        "arithmetic instead of a large model solving competition maths; the step labels are "
        "exact (a checker) instead of human raters', and the Monte Carlo labels come from the "
        "same SFT policy that writes the solutions; the reward models start from that policy "
        "and see only its solutions; best-of-n is over the same policy's samples.",
    ]
    return "\n".join(lines) + "\n"


PAPER = "Lightman et al. (2023)"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    n, answers, combined = str(results["ns"][-1]), results["answers"], results["combined"]
    d = combined["differences"]
    falls = ", ".join(
        f"{name.replace('_', ' ')} {interval_text(combined['change'][name], signed=True)}"
        for name in REWARD_MODELS
    )
    versus_orm = interval_text(d[difference_name("prm_checker", "orm")][n], signed=True)
    versus_vote = interval_text(d[difference_name("prm_checker", "majority")][n], signed=True)
    return [
        f"at best-of-{n}, PRM (step-checker labels) - ORM {versus_orm}: "
        f"**{answers['prm_vs_orm']}**",
        f"PRM - majority vote {versus_vote}: **{answers['prm_vs_majority']}**",
        f"every reward model's pick falls from n = 1 to {n} ({falls}; observed, not a criterion)",
    ]


def summarize(results: dict) -> dict:
    n = str(results["ns"][-1])
    return {
        **{f"answer/{k}": v for k, v in results["answers"].items()},
        **{f"best_of_{n}/{name}": results["combined"][name][n][0] for name in SELECTORS},
    }


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
