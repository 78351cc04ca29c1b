"""The reward-KL frontier of DPO and its relatives against PPO (Rafailov et al. 2023, Fig. 2),
and direct-alignment over-optimisation (Rafailov et al. 2024, "Scaling laws for reward model
overoptimization in direct alignment algorithms").

    python -m experiments.dpo_frontier --config configs/dpo_frontier.py --workdir runs/dpo_frontier

For every seed in `config.seeds`, in <workdir>/seed<k>/ (every stage cached, so a rerun resumes;
the runs, their configs and their evaluations: alignax/frontier_runs.py):
  1. pretrain -> SFT -> reward model: the first stages of the RLHF graph (alignax.study).
  2. offline runs, all on ONE set of pairs of SFT samples to training prompts, labelled by the
     simulated annotator: DPO at each beta in `dpo_betas`, the `variants` (IPO, cDPO, SimPO,
     ORPO, preferred-FT = NLL on the chosen responses of the same pairs) through the dpo stage,
     and KTO (each pair split into a desirable and an undesirable example) through the kto
     stage (alignax/workflows/); same optimizer, same passes over the pairs.
  3. PPO (the ppo stage) at each KL target of `rl.kl_targets` (adaptive KL coefficient),
     against the reward model and against the gold reward itself.
  4. over-optimisation: DPO at `overoptimization.beta` for `overoptimization.steps` (several
     epochs over the same pairs). Its first `offline.train.steps` steps are that beta's frontier
     run (the same run under the constant learning rate). The peak checkpoint (by the in-run
     evaluation) and the final one are evaluated again on fresh held-out prompts, paired.
Every run evaluates every `train.eval_every` steps, keeping that step's checkpoint: the gold
reward of samples to held-out prompts and their KL to the SFT policy
(alignax.analysis.policy_eval.evaluate_policy). A run is a trajectory of (KL, gold) points; a
method's envelope is the upper concave envelope of its runs' points and the SFT policy's (KL 0).
Its vertices, chosen on those evaluations, are measured again on the fresh draw of
`overoptimization.num_prompts` prompts (one sampling key for every method and the SFT policy),
and the frontier is the envelope of the fresh measurements, read at fixed KL budgets per seed;
the mean over seeds has a 95% t-interval, and a rule decides between two methods from their
per-seed differences (alignax/analysis/frontier.py). Writes results.json, results.md (tables, the
ordering, provenance, wall time), figures/ (PNG + PDF) and timings.json.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from alignax.analysis.frontier import (
    difference_table,
    figures,
    fresh_vertices,
    frontier_results,
    frontier_table,
    turnover_table,
)
from alignax.analysis.policy_eval import on_fresh_prompts
from alignax.analysis.report import intervals, table
from alignax.analysis.stats import interval_text
from alignax.cli import run_experiment
from alignax.frontier_runs import (
    RUNNERS,
    check_same_data,
    method_runs,
    overoptimization_seed,
    run_config,
    runs_of,
    shared_pairs,
    timing_key,
    trajectory,
)
from alignax.provenance import written_by
from alignax.rl import describe_reward
from alignax.sharding import make_mesh
from alignax.study import RLHF_STAGES, PlannedStage, Study, rlhf_stage_config, wall_time_text
from alignax.tasks import get_task

BASE_STAGES = ("pretrain", "sft", "reward_model")
# The last evaluation's fields in the report's table of how each method's policies end.
ENDING = ("kl", "gold", "length", "ended")

# ---------------------------------------------------------------------------------------------
# One seed.


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    """The stages of one seed: pretrain, SFT and the reward model, then every run of
    `runs_of`; the DPO-family runs share one set of pairs, labelled once."""
    check_same_data(config)
    runs = runs_of(config)
    planned = [
        PlannedStage(name, RLHF_STAGES[name].KIND, rlhf_stage_config(config, name, seed, seed_dir))
        for name in BASE_STAGES
    ]
    # The pairs of the first run (every paired loss's; KTO draws the same ones itself).
    pairs = functools.partial(shared_pairs, run_config(config, runs[0], seed, seed_dir))
    return planned + [
        PlannedStage(
            run.name,
            RUNNERS[run.runner].KIND,
            run_config(config, run, seed, seed_dir),
            group=timing_key(run),
            inputs=pairs if run.runner == "dpo" else None,
        )
        for run in runs
    ]


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """Every run's trajectory, the long DPO run's over-optimisation result, and each method's
    frontier vertices measured again on the fresh draw: of all its runs ("vertices") and of its
    run at the equal tuning budget ("equal_budget_vertices")."""
    runs = runs_of(config)
    over_run = next(r for r in runs if r.frontier_steps is not None)
    task, mesh = get_task(config.task_name, config.task), make_mesh(config.mesh)
    trajectories = {
        run.name: trajectory(seed_dir / run.name, run.runner, run.frontier_steps) for run in runs
    }
    over = overoptimization_seed(config, task, mesh, seed, seed_dir, over_run)

    def measure(name: str, steps: list[int]) -> dict:
        return on_fresh_prompts(
            seed_dir / "sft",
            seed_dir / name,
            {str(s): s for s in steps},
            task=task,
            seed=seed,
            num_prompts=config.overoptimization.num_prompts,
            max_new_tokens=config.offline.eval.max_new_tokens,
            mesh=mesh,
            cache=seed_dir / name / "fresh_vertices.json",
        )

    sets = {
        "vertices": method_runs(runs),
        "equal_budget_vertices": method_runs([r for r in runs if r.equal_budget]),
    }
    start = over["reevaluated"]["sft_gold"]
    vertices = fresh_vertices(sets, trajectories, start, config.budgets, measure)
    return {"trajectories": trajectories, "overoptimization": over, **vertices}


# ---------------------------------------------------------------------------------------------
# Figures and the report.


def trimmed(config) -> str:
    """What the default run leaves out of the papers' protocol, from the config itself."""
    o, over = config.offline, config.overoptimization
    epochs = o.train.steps * o.train.batch_size / o.pairs.num_pairs
    return (
        f"{o.pairs.num_pairs} pairs; every offline run {o.train.steps} steps of batch "
        f"{o.train.batch_size} ({epochs:g} epochs); one run per variant at one hyperparameter; "
        f"PPO {config.rl.ppo.train.steps} iterations of {config.rl.ppo.train.batch_size} prompts "
        f"at KL targets {', '.join(f'{t:g}' for t in config.rl.kl_targets)} only; evaluation "
        f"every {o.train.eval_every} steps (PPO every {config.rl.ppo.train.eval_every} "
        f"iterations) on {o.eval.num_prompts} held-out prompts, one sample each; "
        f"over-optimisation run {over.steps} steps."
    )


def report(config, results: dict, timings: dict, prov: dict) -> str:
    seeds, front = results["seeds"], results["frontiers"]
    pairs, turn = results["comparisons"], results["overoptimization"]
    budgets = list(config.budgets)
    over = config.overoptimization
    steps_per_epoch = config.offline.pairs.num_pairs / config.offline.train.batch_size
    lines = [
        "### DPO reward-KL frontier (Rafailov et al. 2023, Fig. 2) and over-optimisation",
        "",
        f"{written_by(prov)}; {len(seeds)} seeds ({', '.join(map(str, seeds))}) on "
        f"{config.workers} process(es); {wall_time_text(timings)}.",
        "",
        "Every method starts from the same SFT policy and learns from the same pairs of its "
        "samples (annotator-labelled; PPO: the reward model trained on such pairs, or gold). "
        "Each run is evaluated along training (gold reward and KL to SFT of one sample per "
        "held-out prompt); a method's envelope is the upper concave envelope of its points and "
        "the SFT policy's (reachable by mixing its policies). The envelope's vertices are chosen "
        "on those in-run evaluations, then every vertex (a checkpoint) is measured again on "
        f"{over.num_prompts} fresh held-out prompts with one sampling key shared by every method "
        "and the SFT policy (paired), and the frontier is the envelope of those fresh "
        "measurements, read at fixed KL budgets: the in-run envelope is a maximum over noisy "
        "evaluations and overstates a method with more runs and evaluations. Mean over seeds ± "
        "95% t-interval; * = not every seed's fresh vertices reach that KL (the value is the "
        "best at a smaller KL).",
        "",
        f"Trimmed to fit the CPU budget: {trimmed(config)}",
        "",
        *frontier_table(front, budgets),
        "",
    ]
    se = np.median(
        [p["gold_se"] for r in seeds.values() for t in r["trajectories"].values() for p in t]
    )
    vertices = [len(vs) for r in seeds.values() for vs in r["vertices"].values()]
    lines += [
        "The same frontiers read from the in-run evaluations (median gold SE of one evaluation "
        f"{se:.3f}; the offline methods evaluated on one draw of held-out prompts, PPO on "
        f"another; {np.mean(vertices):.1f} vertices a method and seed on average were measured "
        "again):",
        "",
        *frontier_table(results["in_run_frontiers"], budgets),
        "",
        "Every variant has one hyperparameter setting (DPO its betas, PPO its KL targets) and "
        "every method the same optimizer: a method whose best learning rate is another is shown "
        "at this one. " + describe_reward(config.rl.ppo.ppo),
        "",
        "Where each method's runs end (their last evaluation, mean over a method's runs per "
        "seed, then over seeds ± 95% t-interval); ended: the share of responses that end with "
        "EOS rather than at the length cap (gold punishes a response that never ends):",
        "",
    ]
    columns = list(zip(ENDING, (1, 2, 1, 2)))
    rows = [[method, *intervals(row, columns)] for method, row in results["endings"].items()]
    lines += table(["method", "KL to SFT", "gold", "length", "ended"], rows)
    lines += ["", "Ordering by mean gold within each budget:", ""]
    for j, b in enumerate(budgets):
        order = sorted(front, key=lambda m: -front[m]["interval"][j][0])
        lines.append(f"- KL ≤ {b:g}: " + " > ".join(order))
    top = results["dominant"]
    lines += [
        "",
        "Rule, stated before the run: A's frontier dominates B's when A - B (per seed, then "
        "mean ± t-interval), at the K budgets where both are defined in every seed (a method "
        "that stopped short of a budget counts with its best gold within it), is non-inferior "
        "at every budget (the 95% interval's lower end above "
        f"-{config.non_inferiority_margin:g}, the margin) and above 0 at one budget or more "
        "with the interval at 1 - 0.05/K (Bonferroni over the budgets); they cross when A - B "
        "is above 0 at one budget and below at another (both corrected); otherwise they are not "
        "separated by this many seeds. The table shows 95% intervals.",
        "",
        f"**Dominates every other frontier: {', '.join(top) if top else 'none'}.**",
    ]
    for reference in dict.fromkeys(["DPO", *top]):
        lines += ["", *difference_table(front, pairs, reference)]
    equal, e = results["equal_budget"], config.equal_budget
    lines += [
        "",
        f"DPO above has {len(config.dpo_betas)} settings (betas) and PPO "
        f"{len(config.rl.kl_targets)} (KL targets) against one for every other method. At an "
        "equal tuning budget, one setting per method fixed before the run (DPO "
        f"at beta {e.dpo_beta:g}, PPO at KL target {e.ppo_kl_target:g}), the same frontiers "
        "(vertices of that run alone, measured again on the fresh prompts) and the same rule:",
        "",
        *frontier_table(equal["frontiers"], budgets),
        "",
        "**Dominates every other frontier at an equal budget: "
        f"{', '.join(equal['dominant']) or 'none'}.**",
    ]
    for reference in dict.fromkeys(["DPO", *equal["dominant"]]):
        lines += ["", *difference_table(equal["frontiers"], equal["comparisons"], reference)]
    lines += [
        "",
        f"Over-optimisation: DPO at beta {over.beta:g} for {over.steps} steps "
        f"({over.steps / steps_per_epoch:g} epochs over the same pairs). The peak is chosen on "
        "the in-run evaluations; the peak and final policies are then evaluated again on "
        f"{over.num_prompts} fresh held-out prompts with the same sampling key (paired), so the "
        "drop is not inflated by picking the maximum of noisy evaluations.",
        "",
    ]
    lines += turnover_table(seeds, steps_per_epoch)
    lines += [
        "",
        "Peak minus final gold over seeds: "
        f"{interval_text((turn['drop'], turn['drop_interval']), 2)}: "
        + (
            "**gold turns over** with KL (the interval lies above 0)."
            if turn["turns_over"]
            else "**no turn-over shown over seeds** (the interval does not lie above 0)."
        )
        + f" Within seeds, {turn['seeds_turning_over']} of {len(seeds)} show a drop above 0 by "
        "more than 1.96 SE over prompts.",
    ]
    return "\n".join(lines) + "\n"


def analyse(config, seeds: dict, workdir: Path) -> dict:
    """The frontiers at the KL budgets, their pairwise comparisons and the dominant methods (of
    all runs, and at the equal tuning budget), the over-optimisation turn-over across seeds;
    the figures."""
    runs = runs_of(config)
    methods = method_runs(runs)
    equal_methods = method_runs([r for r in runs if r.equal_budget])
    results = frontier_results(config, methods, equal_methods, seeds, ENDING)
    figures(config, methods, seeds, results["in_run_frontiers"], results["frontiers"], workdir)
    return results


PAPER = "Rafailov et al. (2023), Fig. 2; Rafailov et al. (2024)"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    over = results["overoptimization"]

    def dpo_against(comparisons: dict) -> str:
        by_verdict = {"first": [], "second": [], "cross": [], "none": []}
        for key, comparison in comparisons.items():
            if key.startswith("DPO vs "):
                by_verdict[comparison["verdict"]].append(key.removeprefix("DPO vs "))
        words = {
            "first": "dominates",
            "second": "is dominated by",
            "cross": "crosses",
            "none": "is not separated from",
        }
        return ", ".join(
            f"{words[v]} {' and '.join(methods)}" for v, methods in by_verdict.items() if methods
        )

    return [
        f"DPO (5 betas) {dpo_against(results['comparisons'])}",
        f"at an equal tuning budget DPO {dpo_against(results['equal_budget']['comparisons'])}",
        f"multi-epoch DPO's turn-over {'shown' if over['turns_over'] else 'not shown'} over seeds "
        f"(drop from peak {interval_text((over['drop'], over['drop_interval']), 2)})",
    ]


def summarize(results: dict) -> dict:
    return {
        "dominant": ", ".join(results["dominant"]) or "none",
        "dominant_at_equal_budget": ", ".join(results["equal_budget"]["dominant"]) or "none",
        "dpo_vs_ppo_rm": results["comparisons"].get("DPO vs PPO (RM)", {}).get("verdict", "n/a"),
        "overoptimization_drop": results["overoptimization"]["drop"],
        "turns_over": results["overoptimization"]["turns_over"],
    }


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
