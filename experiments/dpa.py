"""Directional Preference Alignment (Wang et al. 2024, "Arithmetic Control of LLMs for Diverse
User Preferences"): a user's preference is a direction in the space of several rewards; one
policy per direction, and the Pareto front the directions trace.

    python -m experiments.dpa --config configs/dpa.py --workdir runs/dpa

On the Study runner (alignax/study.py: a finished stage is skipped, so a rerun resumes):
  1. SFT from scratch (`config.sft`, <workdir>/sft), unless `labels.policy_from` names one.
  2. per seed: `pairs.num_pairs` pairs of SFT samples to training prompts (and
     `pairs.num_eval_pairs` to held-out prompts), and the score of every response on each of the
     two `objectives` (principles of alignax.feedback, defined on the gold reward's components),
     each standardised by its standard deviation over the training pairs' responses.
  3. per seed and direction theta: the directional reward <w, r> with w = (cos theta, sin theta)
     (`feedback.directional_reward`), pairs labelled by a Bradley-Terry annotator of it
     (`label_temperature`; the pairs it ties on are dropped with `drop_ties`, else labelled by a
     coin flip; their share is reported), DPO (`config.dpo`) from the SFT policy
     (<workdir>/seed<k>/dpo/direction_<theta>), every checkpoint kept.
  4. the SFT policy and every checkpoint of every DPO run answer `eval.num_prompts` held-out
     prompts: the mean raw score on each objective and the gold reward, and the KL to the SFT
     policy estimated on the same responses. Each direction is read at its final step and at
     `matched_kl` nats (where its training first reaches it, linear between checkpoints).
     results.md (command and commit first), results.json and figures/pareto_front.{png,pdf}:
     means over seeds with 95% intervals.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from alignax import feedback
from alignax.analysis.frontier import at_kl
from alignax.analysis.report import intervals, table
from alignax.analysis.stats import interval_text
from alignax.checkpoint import checkpoint_steps, restore_params
from alignax.cli import run_experiment
from alignax.feedback import runs
from alignax.feedback.directions import (
    aggregate,
    figure,
    labelled_pairs,
    objective_scores,
    tied,
)
from alignax.provenance import written_by
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model
from alignax.study import PlannedStage, Study, check_every_checkpoint_kept, made_once
from alignax.tasks import get_task

# ---------------------------------------------------------------------------------------------
# The plan: one SFT policy for every seed; per seed, DPO toward every direction.


def shared(config, workdir: Path) -> list[PlannedStage]:
    """The SFT policy, unless `labels.policy_from` names one."""
    if len(config.objectives) != 2:
        raise ValueError(f"objectives={tuple(config.objectives)}: a plane needs exactly two")
    if not config.matched_kl > 0:
        raise ValueError(f"matched_kl={config.matched_kl}: a KL budget in nats, > 0")
    check_every_checkpoint_kept(
        config.dpo.train, "dpo.train", "each direction is read at matched KL from every one"
    )
    for name in config.objectives:
        feedback.principle(name)  # raises on an unknown principle, naming the allowed ones
    return runs.sft_stages(config)


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    policy = runs.policy_dir(config, seed_dir.parent)
    made_from = {
        "labels": config.labels,
        "pairs": config.pairs,
        "objectives": list(config.objectives),
        "label_temperature": config.label_temperature,
    }
    return [
        runs.dpo_stage(
            config,
            f"dpo/direction_{degrees:g}",
            policy,
            seed,
            functools.partial(direction_pairs, config, seed, policy, degrees),
            made_from,
        )
        for degrees in config.directions
    ]


def scored_pairs(config, seed: int, policy: Path) -> dict:
    """The seed's pairs of SFT samples (training and held-out prompts) with every response's
    score on each objective, and the scores' spread over the training pairs. Made once per
    process (`made_once`)."""
    task, mesh = get_task(config.task_name, config.task), make_mesh(config.mesh)
    principles = [feedback.principle(n) for n in config.objectives]
    model, params = load_stage_model(policy, heads=("lm",), mesh=mesh)
    p = config.pairs
    pairs = runs.sample_pairs(config, task, model, params, p.num_pairs, seed, "train")
    held_out = runs.sample_pairs(config, task, model, params, p.num_eval_pairs, seed, "eval")
    scores = objective_scores(task, pairs, principles)
    spread = scores.reshape(-1, len(principles)).std(0)
    if not np.all(spread > 0):
        raise ValueError(
            f"objectives {tuple(config.objectives)}: a score is constant over the SFT samples "
            f"(spread {spread.tolist()}); choose principles the policy's samples differ on"
        )
    return {
        "task": task,
        "pairs": pairs,
        "held_out": held_out,
        "scores": scores,
        "held_out_scores": objective_scores(task, held_out, principles),
        "spread": spread,
    }


def direction_pairs(config, seed: int, policy: Path, degrees: float) -> dict:
    """The DPO stage's pairs toward one direction: training and held-out pairs labelled by the
    annotator of the directional reward, ties dropped with `drop_ties` (`labelled_pairs`)."""
    d = made_once(scored_pairs, config, seed, policy)
    rng = np.random.default_rng([seed, 17, int(degrees * 100)])
    train, evaluation = (
        labelled_pairs(
            pairs,
            scores,
            d["spread"],
            degrees,
            config.label_temperature,
            rng,
            drop_ties=config.drop_ties,
        )
        for pairs, scores in ((d["pairs"], d["scores"]), (d["held_out"], d["held_out_scores"]))
    )
    return {"pairs": (train, evaluation, d["task"])}


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """The SFT policy's scores on held-out prompts; for every DPO run, the scores and KL to the
    SFT policy at its final step, its trajectory (the SFT policy, then every checkpoint, each
    policy sampled once for its scores and its KL) and its point at `matched_kl` (`at_kl`)."""
    task, mesh = get_task(config.task_name, config.task), make_mesh(config.mesh)
    principles = [feedback.principle(n) for n in config.objectives]
    policy = runs.policy_dir(config, seed_dir.parent)
    model, sft = load_stage_model(policy, heads=("lm",), mesh=mesh)

    def scores(params):  # objectives, gold and KL to the SFT policy, all on the same responses
        return runs.policy_scores(config, task, model, params, principles, seed, reference=sft)

    pairs = made_once(scored_pairs, config, seed, policy)
    result = {"seed": seed, "spread": pairs["spread"].tolist(), "sft": scores(sft), "runs": []}
    for degrees in config.directions:
        run_dir = seed_dir / "dpo" / f"direction_{degrees:g}"
        points = [{"step": 0, **result["sft"]}]
        for step in checkpoint_steps(run_dir / "checkpoints"):
            params = restore_params(run_dir / "checkpoints", sft, step=step)
            points.append({"step": step, **scores(params)})
        result["runs"].append(
            {
                "degrees": float(degrees),
                **{k: points[-1][k] for k in ("objectives", "gold_reward")},
                "kl_to_reference": points[-1]["kl"],  # the final step is the last checkpoint
                "tied_share": float(tied(pairs["scores"], pairs["spread"], degrees).mean()),
                "trajectory": points,
                "matched": at_kl(points, config.matched_kl),
            }
        )
    return result


# ---------------------------------------------------------------------------------------------
# Report.


def report(config, result: dict, timings: dict, prov: dict) -> str:
    first, second = config.objectives
    ties = (
        "dropped from training and evaluation" if config.drop_ties else "whose label is a coin flip"
    )
    lines = [
        "### Directional preference alignment: the Pareto front",
        "",
        written_by(prov) + f"; wall time {timings['seconds/total'] / 60:.1f} min.",
        "",
        f"Objectives: {first} (x) and {second} (y), principles of the review task's gold reward. "
        f"Per seed, {config.pairs.num_pairs} pairs of SFT samples labelled by a Bradley-Terry "
        f"annotator (temperature {config.label_temperature:g}) of the directional reward "
        "cos(theta) r_1 / s_1 + sin(theta) r_2 / s_2 (s_i: the score's spread over the SFT "
        f"samples); DPO ({config.dpo.loss.name}, {config.dpo.train.steps} steps) from the SFT "
        f"policy per direction; scores of each policy's samples on "
        f"{config.eval.num_prompts} held-out prompts, and its KL to the SFT policy estimated on "
        "the same samples (mean of log pi(y|x) - log pi_SFT(y|x)). Tied: the share of training "
        f"pairs the directional reward cannot order, {ties} (at 90 degrees every pair of responses "
        f"without a repeated bigram). Means over {len(config.seeds)} seed(s) with 95% intervals.",
        "",
        "At the final step of each run:",
        "",
    ]
    sft = result["sft"]
    columns = [("gold_reward", 3), ("kl_to_reference", 2), ("tied_share", 2)]
    rows = [
        ["SFT", *map(interval_text, sft["objectives"]), interval_text(sft["gold_reward"]), 0, "–"],
        *(
            [
                f"DPO, {r['degrees']:g} deg",
                *map(interval_text, r["objectives"]),
                *intervals(r, columns),
            ]
            for r in result["directions"]
        ),
    ]
    lines += table(["policy", first, second, "gold reward", "KL to SFT", "tied pairs"], rows)
    lines += steps_table(config, result["steps"], "final step")
    matched = result["matched_kl"]
    lines += [
        "",
        f"At matched KL: each direction where its training first reaches {matched['budget']:g} "
        "nats of KL to the SFT policy (a budget chosen before the run; linear between its "
        f"checkpoints, every {config.dpo.train.checkpoint_every} steps), so no direction is "
        "read further from SFT than another.",
        "",
        f"| policy | {first} | {second} | gold reward | at step |",
        "|---|---|---|---|---|",
    ]
    for r in matched["directions"]:
        if "objectives" not in r:
            lines.append(
                f"| DPO, {r['degrees']:g} deg | not reached in "
                f"{len(config.seeds) - r['seeds_reached']} of {len(config.seeds)} seeds | | | |"
            )
            continue
        lines.append(
            f"| DPO, {r['degrees']:g} deg | {interval_text(r['objectives'][0])} | "
            f"{interval_text(r['objectives'][1])} | {interval_text(r['gold_reward'])} | "
            f"{interval_text(r['step'], 0)} |"
        )
    lines += steps_table(config, matched["steps"], f"{matched['budget']:g} nats")
    return "\n".join(lines) + "\n"


def steps_table(config, steps: list[dict], where: str) -> list[str]:
    """The report's lines for `front_steps` read at `where`."""
    if not steps:
        return []
    first, second = config.objectives
    lines = [
        "",
        f"From each direction to the next ({where}), the change of each objective's mean, "
        "paired by seed (95% intervals); in order: the step lowers the first objective and "
        "raises the second, both intervals excluding 0.",
        "",
    ]
    rows = [
        [
            f"{step['from']:g} -> {step['to']:g} deg",
            *(interval_text(change, signed=True) for change in step["change"]),
            "yes" if step["in_order"] else "not shown",
        ]
        for step in steps
    ]
    lines += table(["step", f"change in {first}", f"change in {second}", "in order"], rows)
    shown = sum(step["in_order"] for step in steps)
    return [*lines, "", f"Steps in order ({where}): {shown} of {len(steps)}."]


def analyse(config, seeds: dict, workdir: Path) -> dict:
    per_seed = [seeds[seed] for seed in config.seeds]
    result = aggregate(config, per_seed)
    figure(config, result, workdir)
    return {**result, "objectives": list(config.objectives), "per_seed": per_seed}


PAPER = "Wang et al. (2024)"


def glance(result: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    final, matched = result["steps"], result["matched_kl"]["steps"]
    return [
        f"the front's order is shown at {sum(s['in_order'] for s in final)} of {len(final)} steps "
        f"between directions at the final step, {sum(s['in_order'] for s in matched)} of "
        f"{len(matched)} at {result['matched_kl']['budget']:g} nats of KL"
    ]


def summarize(result: dict) -> dict:
    return {
        f"{name}/direction_{r['degrees']:g}": r["objectives"][i][0]
        for r in result["directions"]
        for i, name in enumerate(result["objectives"])
    }


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
