"""RLAIF with targeted human feedback: DPO on pairs labelled by an AI judge, with a budget of
gold ("human") labels spent where the judge is least sure (RLTHF), against the same budget on
random pairs, and against full gold labels.

    python -m experiments.rlaif --config configs/rlaif.py --workdir runs/rlaif

On the Study runner (alignax/study.py: a finished stage is skipped, so a rerun resumes):
  1. SFT from scratch (`config.sft`, the sft stage, <workdir>/sft), unless
     `labels.policy_from` names one.
  2. per seed: `pairs.num_pairs` pairs (a, b) of SFT samples to training prompts, and
     `pairs.num_eval_pairs` to held-out prompts; the human annotator's labels (`labels`,
     a Bradley-Terry annotator of the gold reward) and the judge's P(a > b) (`judge`).
  3. per seed and budget p: the judge's labels (drawn from its P(a > b) with
     `judge.sample_labels`, else its argmax) with floor(p N / 100) pairs relabelled by the
     human: the least confident (|P - 0.5| smallest, or the most disagreed-on for an
     ensemble) and, as the baseline, random ones. p = 0 is pure AI feedback, p = 100 is pure
     human feedback. DPO (`config.dpo`, the dpo stage) from the SFT policy on each
     (<workdir>/seed<k>/dpo/<routing>_<budget>).
  4. delta learning (`delta.weak_sft_steps` > 0): a weak SFT policy (the recipe stopped early);
     per seed, pairs of an SFT and a weak-SFT sample to the same training prompts, the SFT
     sample chosen with no label, DPO from the SFT policy (seed<k>/dpo/delta): against
     DPO on human labels.
  5. results.md (command and commit first), results.json and figures/: judge-gold agreement,
     the labels' agreement with gold per budget, and the DPO policy's gold reward on held-out
     prompts, means over seeds with 95% intervals; differences paired by seed from pure AI and
     pure human feedback and between targeted and random labels, and which budgets close the
     gap (`closes_gap`).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np

from alignax import feedback, labels
from alignax.analysis.label_budget import aggregate, closes_gap, figure
from alignax.analysis.report import intervals, table
from alignax.analysis.stats import interval_text
from alignax.cli import run_experiment
from alignax.experiment import read_summary
from alignax.feedback import runs
from alignax.feedback.routing import ROUTING, conditions, routed_labels
from alignax.provenance import written_by
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model, stage_config
from alignax.study import PlannedStage, Study, made_once
from alignax.tasks import get_task
from alignax.workflows import sft

# ---------------------------------------------------------------------------------------------
# The plan: one SFT policy (and a weak one) for every seed; per seed, DPO on every labelling.


def shared(config, workdir: Path) -> list[PlannedStage]:
    """The SFT policy (unless `labels.policy_from` names one) and delta learning's weak policy:
    the SFT recipe stopped after `delta.weak_sft_steps` steps (none when 0)."""
    if config.routing.by not in ROUTING:
        raise ValueError(f"routing.by={config.routing.by!r}; allowed: {ROUTING}")
    for p in config.routing.budgets:
        feedback.budget_count(1, p)  # raises on a budget outside [0, 100]
    stages = runs.sft_stages(config)
    steps = config.delta.weak_sft_steps
    if steps > 0:
        weak = config.sft.copy_and_resolve_references()
        weak.train.update(steps=steps, eval_every=steps, checkpoint_every=steps)
        weak.train.log_every = min(weak.train.log_every, steps)
        stages.append(PlannedStage("sft_weak", sft.KIND, stage_config(config, weak, {})))
    return stages


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    """One DPO run per condition (`conditions`) from the SFT policy, and the delta-learning run;
    all on the seed's pairs, sampled and labelled once."""
    policy = runs.policy_dir(config, seed_dir.parent)
    sampled = {"labels": config.labels, "pairs": config.pairs}
    labelled = {**sampled, "judge": config.judge, "routing_by": config.routing.by}
    stages = [
        runs.dpo_stage(
            config,
            f"dpo/{routing}_{percent:g}",
            policy,
            seed,
            functools.partial(condition_pairs, config, seed, policy, routing, percent),
            labelled,
        )
        for routing, percent in conditions(config.routing)
    ]
    if config.delta.weak_sft_steps > 0:
        weak = seed_dir.parent / "sft_weak"
        pairs = functools.partial(delta_pairs, config, seed, policy, weak)
        made_from = {**sampled, "weak_policy_from": weak}
        stages.append(runs.dpo_stage(config, "dpo/delta", policy, seed, pairs, made_from))
    return stages


def labelled_pairs(config, seed: int, policy: Path) -> dict:
    """The seed's pairs of SFT samples to training prompts with the human's and the judge's
    labels, the judge's statistics, and the held-out pairs labelled by the human (every
    condition's evaluation). Made once per process (`made_once`)."""
    task, mesh = get_task(config.task_name, config.task), make_mesh(config.mesh)
    model, params = load_stage_model(policy, heads=("lm",), mesh=mesh)
    judge, uncertainty = runs.build_judge(config.judge, task, mesh, policy)
    p = config.pairs
    pairs = runs.sample_pairs(config, task, model, params, p.num_pairs, seed, "train")
    held_out = runs.sample_pairs(config, task, model, params, p.num_eval_pairs, seed, "eval")
    start = time.perf_counter()
    labelled = runs.label_pairs(config, task, judge, uncertainty, pairs, seed)
    judge_seconds = time.perf_counter() - start
    human_eval = labels.annotator_prefers_first(
        config.labels, held_out, np.random.default_rng([seed, 10])
    )
    statistics = {
        "gold_agreement": float(np.mean(labelled["judge"] == labelled["gold"])),
        "human_agreement": float(np.mean(labelled["judge"] == labelled["human"])),
        "human_gold_agreement": float(np.mean(labelled["human"] == labelled["gold"])),
        "seconds": judge_seconds,
        **feedback.position_bias(judge, pairs),
    }
    return {
        "task": task,
        "pairs": pairs,
        "labelled": labelled,
        "judge": statistics,
        "evaluation": runs.chosen_first(held_out, human_eval),
    }


def condition_pairs(config, seed: int, policy: Path, routing: str, percent: float) -> dict:
    """The DPO stage's pairs under one condition: the judge's labels with the budget's pairs
    relabelled by the human."""
    data = made_once(labelled_pairs, config, seed, policy)
    merged, _ = routed_labels(config.routing, data["labelled"], routing, percent, seed)
    train = runs.chosen_first(data["pairs"], merged)
    return {"pairs": (train, data["evaluation"], data["task"])}


def strong_weak_pairs(config, seed: int, policy: Path, weak: Path) -> dict:
    """Delta learning's pairs (Olmo 3): a strong (SFT) and a weak policy's samples to the same
    training prompts as the labelled pairs, with their gold reward."""
    task, mesh = get_task(config.task_name, config.task), make_mesh(config.mesh)
    strong = load_stage_model(policy, heads=("lm",), mesh=mesh)
    rival = load_stage_model(weak, heads=("lm",), mesh=mesh)
    n = config.pairs.num_pairs
    return runs.sample_pairs(config, task, *strong, n, seed, "train", rival=rival)


def delta_pairs(config, seed: int, policy: Path, weak: Path) -> dict:
    """The delta-learning stage's pairs: the strong sample chosen with no label at all; the same
    held-out evaluation as every other condition."""
    pairs = made_once(strong_weak_pairs, config, seed, policy, weak)
    data = made_once(labelled_pairs, config, seed, policy)
    train = runs.chosen_first(pairs, np.ones(len(pairs["gold_reward"]), bool))
    return {"pairs": (train, data["evaluation"], data["task"])}


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """The judge's statistics, and per condition its labels' agreement and the DPO policy's
    held-out results; the delta-learning run's."""
    policy = runs.policy_dir(config, seed_dir.parent)
    data = made_once(labelled_pairs, config, seed, policy)
    labelled = data["labelled"]
    result = {"seed": seed, "judge": data["judge"], "runs": []}
    for routing, percent in conditions(config.routing):
        merged, selected = routed_labels(config.routing, labelled, routing, percent, seed)
        summary = read_summary(seed_dir / "dpo" / f"{routing}_{percent:g}")
        result["runs"].append(
            {
                "routing": routing,
                "percent": percent,
                "gold_labels": int(len(selected)),
                "label_gold_agreement": float(np.mean(merged == labelled["gold"])),
                "label_human_agreement": float(np.mean(merged == labelled["human"])),
                **dpo_results(summary),
            }
        )
    if config.delta.weak_sft_steps > 0:
        gold = made_once(strong_weak_pairs, config, seed, policy, seed_dir.parent / "sft_weak")[
            "gold_reward"
        ]
        result["delta"] = {
            "label_gold_agreement": float(np.mean(gold[:, 0] >= gold[:, 1])),
            "strong_gold": float(np.mean(gold[:, 0])),
            "weak_gold": float(np.mean(gold[:, 1])),
            **dpo_results(read_summary(seed_dir / "dpo" / "delta")),
        }
    return result


def dpo_results(summary: dict) -> dict:
    return {
        "gold_reward": summary["gold_reward"],
        "kl_to_reference": summary["kl_to_reference"] or float("nan"),
        "eval_accuracy": summary["eval_accuracy"],
    }


# ---------------------------------------------------------------------------------------------
# Report.

# The columns of a DPO run after its labels' agreement with gold.
MEASURED = ("DPO gold reward", "KL to SFT", "held-out accuracy")


def report(config, result: dict, timings: dict, prov: dict) -> str:
    judge, rows = result["judge"], result["conditions"]
    lines = [
        "### AI feedback with targeted human labels (RLAIF / RLTHF)",
        "",
        written_by(prov) + f"; wall time {timings['seconds/total'] / 60:.1f} min.",
        "",
        f"Pairs: {config.pairs.num_pairs} pairs of SFT samples to training prompts per seed; "
        f"human = {config.labels.annotator} annotator of the gold reward (temperature "
        f"{config.labels.annotator_temperature:g}); judge = {runs.describe_judge(config.judge)}. "
        f"DPO ({config.dpo.loss.name}, {config.dpo.train.steps} steps) from the SFT policy; "
        f"gold reward of its samples on {config.dpo.eval.num_prompts} held-out "
        f"prompts. Means over {len(config.seeds)} seed(s) with 95% intervals.",
        "",
        *table(
            ("judge vs", "agreement"),
            [
                ("gold preference (higher gold wins)", interval_text(judge["gold_agreement"])),
                ("human labels", interval_text(judge["human_agreement"])),
                ("(human labels vs gold)", interval_text(judge["human_gold_agreement"])),
            ],
        ),
        "",
        f"Position bias of the judge (swap test): logit bias {interval_text(judge['logit_bias'])}, "
        f"P(first shown preferred) {interval_text(judge['first_preferred'])}, verdicts consistent "
        f"under the swap {interval_text(judge['consistency'])}.",
        "",
    ]

    def paired(row: dict, key: str) -> str:
        return interval_text(row[key], signed=True) if key in row else "-"

    measures = [("label_gold_agreement", 3), ("gold_reward", 3)]
    measures += [("kl_to_reference", 2), ("eval_accuracy", 3)]
    header = ["human labels", "budget", "pairs", "labels agree with gold", *MEASURED]
    header += ["gold - AI only", "gold - human only", "targeted - random"]
    lines += table(
        header,
        (
            [
                r["routing"],
                f"{r['percent']:g}%",
                r["gold_labels"],
                *intervals(r, measures),
                *(paired(r, key) for key in ("minus_ai", "minus_human", "minus_random")),
            ]
            for r in rows
        ),
    )
    closing = {r["percent"]: closes_gap(r) for r in rows if r["routing"] == "targeted"}
    closing = {p: c for p, c in closing.items() if c is not None and 0 < p < 100}
    lines += [
        "",
        "0% is pure AI feedback and 100% pure human feedback; the last three columns are "
        "differences of DPO gold reward paired by seed (each seed's runs share its SFT policy, "
        "pairs and prompts). The RLTHF claim is that a few % targeted human labels match full "
        "human labels. Criterion, stated before the run: a budget closes the gap when its gold "
        "is above AI only (interval above 0) and not below human only (interval reaching 0).",
    ]
    if closing:
        closed = [f"{p:g}%" for p, c in closing.items() if c]
        lines += [
            "",
            "Budgets that close the gap: "
            + (", ".join(closed) if closed else "none")
            + f" (of {', '.join(f'{p:g}%' for p in closing)}).",
        ]
    if "delta" in result:
        d = result["delta"]
        human = next(r for r in rows if r["routing"] == "targeted" and r["percent"] == 100.0)
        delta_pairs = (
            f"SFT vs weak SFT samples (gold {interval_text(d['strong_gold'])} vs "
            f"{interval_text(d['weak_gold'])})"
        )
        header = ["pairs", "labels", "labels agree with gold", *MEASURED]
        lines += [
            "",
            f"Delta learning (Olmo 3): the same {config.pairs.num_pairs} training prompts, one "
            f"sample of the SFT policy and one of a weak SFT policy ({config.delta.weak_sft_steps} "
            "SFT steps) each, the SFT sample chosen with no label at all; DPO as above.",
            "",
            *table(
                header,
                [
                    [delta_pairs, "none: the SFT sample", *intervals(d, measures)],
                    ["SFT sample pairs", "human (100%)", *intervals(human, measures)],
                ],
            ),
            "",
            "Delta minus human-labelled DPO gold reward (paired by seed): "
            f"{interval_text(d['minus_human_gold_reward'], signed=True)}.",
        ]
    return "\n".join(lines) + "\n"


def analyse(config, seeds: dict, workdir: Path) -> dict:
    per_seed = [seeds[seed] for seed in config.seeds]
    result = aggregate(conditions(config.routing), per_seed)
    figure(result["conditions"], workdir)
    return {**result, "per_seed": per_seed}


PAPER = "RLAIF (Bai et al. 2022; Lee et al. 2023), RLTHF's targeted human labels"


def glance(result: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish), of the conditions
    the run planned."""
    targeted = [r for r in result["conditions"] if r["routing"] == "targeted"]
    verdicts = [
        f"human labels beat AI feedback by {interval_text(r['minus_ai'], 2)} gold"
        for r in targeted
        if r["percent"] == 100 and "minus_ai" in r
    ]
    for key, claim, holds in (  # beats: the interval lies above 0; closes: it reaches 0
        ("minus_random", "targeted beat random labels", lambda mean, half: mean - half > 0),
        ("minus_human", "the gap to human labels closes", lambda mean, half: mean + half >= 0),
    ):
        rows = [r for r in targeted if 0 < r["percent"] < 100 and key in r]
        if rows:
            budgets = ", ".join(f"{r['percent']:g}" for r in rows)
            shown = ", ".join(f"{r['percent']:g}%" for r in rows if holds(*r[key]))
            verdicts.append(f"{claim} at {shown or 'no budget'} of {budgets}%")
    return verdicts


def summarize(result: dict) -> dict:
    targeted = {
        r["percent"]: r["gold_reward"][0]
        for r in result["conditions"]
        if r["routing"] == "targeted"
    }
    return {
        "judge_gold_agreement": result["judge"]["gold_agreement"][0],
        **{f"gold_reward/targeted_{p:g}": g for p, g in targeted.items()},
        **({"gold_reward/delta": result["delta"]["gold_reward"][0]} if "delta" in result else {}),
    }


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
