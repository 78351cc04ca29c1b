"""Reward-model ensembles against over-optimisation: does WCO or UWO stop best-of-n's decline?

    python -m experiments.rm_ensembles --config configs/rm_ensembles.py --workdir runs/ensembles

Stages (each in <workdir>/seed<k>/<stage>, each resumable), for every seed in `config.seeds`:
  1. sft         the arithmetic task's demonstrations (worked solutions), training problems
  2. member<m>   for m < `ensemble.size`: an outcome reward model on the SFT policy's solutions
                 to training problems, labelled by the verifier, with its own seed (its own
                 solutions and initialisation)
  3. eval        `eval.num_samples` samples of the SFT policy on each of `eval.num_problems`
                 distinct held-out problems, scored by every member, with the verifier's
                 outcome. Cached in <workdir>/seed<k>/eval.npz.
The analysis (alignax/analysis/ensembles.py): best-of-n accuracy for n = 1, 2, 4, ... up to the
pool for a single member, the members' mean, worst case (WCO) and uncertainty-weighted (UWO)
combinations and the oracle; the cross-fitted peak over n and the loss from it; the paired
differences from a single member, mean over seeds with 95% t-intervals, and the answers to the
criteria of configs/rm_ensembles.py.

Coste et al. (2023, "Reward model ensembles help mitigate overoptimization") find that WCO and
UWO ensembles of reward models remove or reduce the fall of gold reward in best-of-n and PPO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignax.analysis.best_of_n import powers_of_two
from alignax.analysis.ensembles import COMBINATIONS, SELECTORS, aggregate, figure, seed_table
from alignax.analysis.policy_eval import EVAL_SEED_OFFSET, distinct_held_out_problems, prompt_texts
from alignax.analysis.report import table
from alignax.analysis.stats import interval_text, interval_verdict
from alignax.analysis.verifiers import reward_model_scores, solution_pool
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


def members(config) -> list[str]:
    return [f"member{m}" for m in range(config.ensemble.size)]


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    check_solution_room(
        config,
        (
            "eval.max_new_tokens",
            "stages.sft.eval.max_new_tokens",
            "stages.member.labels.max_new_tokens",
        ),
    )
    if config.ensemble.size < 2:
        raise ValueError(f"ensemble.size={config.ensemble.size}: an ensemble needs 2 members")
    stages = [PlannedStage("sft", sft.KIND, seed_stage_config(config, "sft", seed, {}))]
    policy = {"init_from": seed_dir / "sft", "labels.policy_from": seed_dir / "sft"}
    for m, name in enumerate(members(config)):
        stage = seed_stage_config(config, "member", seed, policy)
        with stage.unlocked():
            stage.seed = 1000 * seed + m  # its own solutions and initialisation
        stages.append(PlannedStage(name, process_reward.KIND, stage, group="members"))
    return stages


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """`measure_seed`, from the cache when it was made with the same evaluation settings from
    the same stages (their fingerprints: checkpoint step, config and upstream)."""
    key = {
        "eval": config.eval.to_dict(),
        "stages": {name: stage_fingerprint(seed_dir / name) for name in ["sft", *members(config)]},
    }
    return cached_arrays(seed_dir / "eval.npz", key, lambda: measure_seed(config, seed, seed_dir))


def measure_seed(config, seed: int, seed_dir: Path) -> dict[str, np.ndarray]:
    """The SFT policy's pool on the held-out problems: `correct` [P, N] (the verifier) and
    `scores` [K, P, N], every member's probability that a sample is right."""
    mesh = make_mesh(config.mesh)
    pool, layout = solution_pool(config, seed, seed_dir / "sft", mesh)
    how = config.stages.member.process.solution_score
    scores = [reward_model_scores(seed_dir / name, layout, how, mesh) for name in members(config)]
    correct = pool["correct"]
    return {"correct": correct, "scores": np.stack([s.reshape(correct.shape) for s in scores])}


def analyse(config, seeds: dict, workdir: Path) -> dict:
    """Per seed and across seeds (mean, 95% interval): every selector's best-of-n accuracy,
    peak and loss from it, and the combinations' paired differences from a single member; the
    answers to the criteria; the figure."""
    e = config.eval
    ns = powers_of_two(e.num_samples)
    tables = {
        str(seed): seed_table(o["correct"], o["scores"], ns, config.ensemble.uwo_penalty)
        for seed, o in seeds.items()
    }
    combined = aggregate(tables, ns)
    task = get_task(config.task_name, config.task)
    problems = distinct_held_out_problems(task, e.num_problems, EVAL_SEED_OFFSET)
    results = {
        "ns": ns,
        "num_samples": e.num_samples,
        "problems": prompt_texts(task, problems),
        "seeds": tables,
        "combined": combined,
        "answers": answers(combined, ns),
    }
    figure(combined, ns, len(tables), workdir / "figures")
    return results


def answers(combined: dict, ns: list[int]) -> dict[str, dict[str, str]]:
    """The criteria of configs/rm_ensembles.py for each combination, from the intervals."""
    out = {}
    for how in COMBINATIONS:
        versus = combined["versus_single"][how]
        out[how] = {
            "accuracy_at_largest_n": interval_verdict(
                versus["accuracy"][str(ns[-1])], "higher than a single member", "lower"
            ),
            # A smaller loss from the peak is a negative difference.
            "loss_from_peak": interval_verdict(versus["loss_from_peak"], "larger", "smaller"),
            "peak": interval_verdict(versus["peak"], "higher", "lower"),
        }
    return out


# ---------------------------------------------------------------------------------------------
# The report.


def report(config, results: dict, timings: dict, prov: dict) -> str:
    e, c, ns = config.eval, config.task, results["ns"]
    combined, seeds = results["combined"], results["seeds"]
    member = config.stages.member
    largest = str(ns[-1])
    lines = [
        "### Reward-model ensembles against over-optimisation in best-of-n",
        "",
        f"{written_by(prov)}; {len(seeds)} seeds ({', '.join(seeds)}) on {config.workers} "
        f"process(es); {wall_time_text(timings)}.",
        "",
        f"The task: {c.num_steps} operations ({' '.join(c.operators)}) on operands "
        f"{c.min_operand}..{c.max_operand}, the solution writing out each step, a verifier of "
        "the answer; held-out problems split from training ones by commutation class. Per seed: "
        f"SFT ({config.stages.sft.train.steps} steps), then {config.ensemble.size} outcome "
        "reward models from the SFT policy, each on its own "
        f"{member.process.num_solutions} SFT solutions to training problems labelled by the "
        f"verifier, {member.train.steps} steps of batch {member.train.batch_size}, each with its "
        f"own seed. Best-of-n on {e.num_problems} distinct held-out problems from a pool of "
        f"{e.num_samples} SFT samples each at temperature {e.temperature}: a single member "
        "(the mean over members of each one's pick), and the members' logits, standardised "
        "over the pool, combined by their mean, their minimum (WCO) or their mean less "
        f"{config.ensemble.uwo_penalty} times their variance (UWO); the oracle picks a right "
        "sample whenever one of the n is (pass@n). Equal n is equal KL (log n - (n-1)/n). The "
        "peak over n is cross-fitted (the n chosen on half the problems, its accuracy read on "
        "the other half, both ways). Mean over seeds ± 95% t-interval; differences paired "
        "within each seed.",
        "",
    ]
    rows = [
        [
            n,
            f"{np.log(n) - (n - 1) / n:.2f}",
            *(interval_text(combined[name]["accuracy"][str(n)]) for name in SELECTORS),
        ]
        for n in ns
    ]
    rows += [
        [label, "-", *(interval_text(combined[name][key]) for name in SELECTORS)]
        for key, label in (
            ("peak", "peak (cross-fitted)"),
            ("loss_from_peak", f"loss from the peak to n = {largest}"),
        )
    ]
    lines += table(["n", "KL (nats)", *SELECTORS.values()], rows)
    lines += [
        "",
        "Each combination against a single member (paired by seed), and the criteria stated "
        "before the run (configs/rm_ensembles.py), answered from the intervals:",
        "",
    ]
    rows = []
    for how, label in COMBINATIONS.items():
        versus, answer = combined["versus_single"][how], results["answers"][how]
        rows.append(
            [
                label,
                interval_text(versus["accuracy"][largest], signed=True),
                f"**{answer['accuracy_at_largest_n']}**",
                interval_text(versus["loss_from_peak"], signed=True),
                f"**{answer['loss_from_peak']}**",
                interval_text(versus["peak"], signed=True),
                f"**{answer['peak']}**",
            ]
        )
    header = ["combination", f"accuracy at n = {largest}", "(1)", "loss from the peak", "(2)"]
    header += ["peak", "(3)"]
    lines += table(header, rows)
    lines += [
        "",
        "Where the setting differs from Coste et al.'s: a tiny model's three-step arithmetic "
        "with a verifier as the gold reward instead of a language model with a gold reward "
        "model; the members are outcome reward models started from the policy whose samples "
        "they rank, each trained on its own sample of solutions (Coste et al.'s members share "
        "their data and differ by seed); best-of-n only, no PPO.",
    ]
    return "\n".join(lines) + "\n"


PAPER = "Coste et al. (2023)"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    n = str(results["ns"][-1])
    versus = results["combined"]["versus_single"]
    return [
        f"at best-of-{n}, {label} minus a single member: "
        f"{interval_text(versus[how]['accuracy'][n], signed=True)} accuracy "
        f"(**{results['answers'][how]['accuracy_at_largest_n']}**)"
        for how, label in (("wco", "WCO"), ("uwo", "UWO"))
    ]


def summarize(results: dict) -> dict:
    n = str(results["ns"][-1])
    return {
        **{
            f"answer/{how}/{k}": v
            for how, criteria in results["answers"].items()
            for k, v in criteria.items()
        },
        **{
            f"best_of_{n}/{name}": results["combined"][name]["accuracy"][n][0] for name in SELECTORS
        },
    }


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
