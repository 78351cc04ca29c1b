"""Critique and revision (Bai et al. 2022, "Constitutional AI", the supervised stage, then RLAIF):
SFT on the policy's own responses revised toward written principles, against SFT on the same
responses unrevised, each followed by RLAIF.

    python -m experiments.critique_revision --config configs/critique_revision.py \
        --workdir runs/critique_revision

On the Study runner (alignax/study.py: a finished stage is skipped, so a rerun resumes):
  1. SFT from scratch (`config.sft`, <workdir>/sft), unless `labels.policy_from` names one.
  2. per seed: the SFT policy's responses to `revision.num_examples` training prompts (and
     `revision.num_eval_examples` held-out ones, the SFT runs' NLL set), each revised toward
     `revision.principles` in turn (`alignax.feedback.revise`).
  3. per seed and variant (the originals, the revisions): SFT from the SFT policy on them
     (`revision.train`), then RLAIF from that policy: pairs of its samples labelled by the AI
     judge (`judge`, alignax/feedback/runs.py), DPO (`config.dpo`); in <workdir>/seed<k>/
     sft_on_<variant> and seed<k>/dpo/<variant>.
  4. every policy answers `eval.num_prompts` held-out prompts (the same prompts and key
     for all of a seed): gold reward and each principle's score. results.md (command and commit
     first) and results.json: means over seeds with 95% intervals, and the paired differences
     revisions minus originals.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np

from alignax import feedback, labels
from alignax.analysis.report import table
from alignax.analysis.stats import interval_text, mean_interval
from alignax.cli import run_experiment
from alignax.experiment import read_summary
from alignax.feedback import runs
from alignax.provenance import written_by
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model, stage_config
from alignax.study import PlannedStage, Study, made_once, with_inputs_from
from alignax.tasks import get_task
from alignax.workflows import sft

VARIANTS = ("originals", "revisions")


def revision_data(config, task, policy, params, seed: int) -> dict:
    """Per split ('train', 'eval'): the SFT policy's responses and their revisions in the LM
    layout, with the share of responses the revision changed and the gold of each."""
    r = config.revision
    out = {}
    for split, n in (("train", r.num_examples), ("eval", r.num_eval_examples)):
        prompts = task.sample_prompts(
            n, np.random.default_rng([seed, 31, split == "eval"]), split=split
        )
        responses = labels.policy_responses(
            policy,
            params,
            task,
            prompts,
            jax.random.fold_in(jax.random.key(seed), 31 + (split == "eval")),
            max_new_tokens=config.labels.max_new_tokens,
            temperature=config.labels.temperature,
            chunk_size=min(1024, n),
        )
        revised = [
            feedback.revise(x, r.principles, max_length=config.labels.max_new_tokens)
            for x in responses
        ]
        out[split] = {
            "originals": task.encode(prompts, responses),
            "revisions": task.encode(prompts, revised),
            "changed": float(np.mean([a != b for a, b in zip(responses, revised)])),
        }
    return out


def gold_of(task, rows: dict) -> float:
    return float(np.mean(task.gold_reward_np(rows["tokens"], rows["loss_mask"])))


# ---------------------------------------------------------------------------------------------
# The plan: one SFT policy for every seed; per seed and variant, SFT on it, then RLAIF.


def shared(config, workdir: Path) -> list[PlannedStage]:
    """The SFT policy, unless `labels.policy_from` names one."""
    feedback.revise([], config.revision.principles, max_length=1)  # names an unknown principle
    return runs.sft_stages(config)


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    """Per variant: SFT from the SFT policy on the originals or the revisions
    (`revision.train` steps; sft_on_<variant>), then RLAIF from it (dpo/<variant>)."""
    policy = runs.policy_dir(config, seed_dir.parent)
    stages = []
    for variant in VARIANTS:
        sft_on = stage_config(config, config.sft, {"init_from": policy})
        with sft_on.unlocked():
            sft_on.train = config.revision.train.copy_and_resolve_references()
            sft_on.seed = seed
        sft_on = with_inputs_from(sft_on, {"labels": config.labels, "revision": config.revision})
        data = functools.partial(variant_data, config, seed, policy, variant)
        stages.append(PlannedStage(f"sft_on_{variant}", sft.KIND, sft_on, inputs=data))
        start = seed_dir / f"sft_on_{variant}"
        pairs = functools.partial(judged_pairs, config, seed, policy, start)
        judged = {"labels": config.labels, "pairs": config.pairs, "judge": config.judge}
        judged["judge_policy_from"] = policy
        stages.append(runs.dpo_stage(config, f"dpo/{variant}", start, seed, pairs, judged))
    return stages


def variant_data(config, seed: int, policy: Path, variant: str) -> dict:
    """The SFT stage's data: the variant's training and held-out rows in the LM layout."""
    data = made_once(revisions, config, seed, policy)
    keys = ("tokens", "input_mask", "loss_mask")
    rows = [{k: data[split][variant][k] for k in keys} for split in ("train", "eval")]
    return {"data": tuple(rows)}


def revisions(config, seed: int, policy: Path) -> dict:
    """`revision_data` of the SFT policy, made once per process (`made_once`)."""
    task = get_task(config.task_name, config.task)
    model, params = load_stage_model(policy, heads=("lm",), mesh=make_mesh(config.mesh))
    return {"task": task, **revision_data(config, task, model, params, seed)}


def judged_pairs(config, seed: int, policy: Path, start: Path) -> dict:
    """RLAIF's pairs: samples of the policy in `start`, labelled by the judge (built on the SFT
    policy `policy`)."""
    task, mesh = get_task(config.task_name, config.task), make_mesh(config.mesh)
    judge, _ = runs.build_judge(config.judge, task, mesh, policy)
    model, params = load_stage_model(start, heads=("lm",), mesh=mesh)
    p = config.pairs
    pairs = runs.sample_pairs(config, task, model, params, p.num_pairs, seed, "train")
    held_out = runs.sample_pairs(config, task, model, params, p.num_eval_pairs, seed, "eval")
    train, evaluation = (
        runs.chosen_first(
            data,
            runs.judge_labels(config.judge, judge(data), np.random.default_rng([seed, 11, i])),
        )
        for i, data in enumerate((pairs, held_out))
    )
    return {"pairs": (train, evaluation, task)}


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """The revised data's statistics, and every policy's scores on held-out prompts."""
    mesh = make_mesh(config.mesh)
    principles = [feedback.principle(n) for n in config.revision.principles]
    policy = runs.policy_dir(config, seed_dir.parent)
    data = made_once(revisions, config, seed, policy)
    task = data["task"]

    def scores(directory: Path) -> dict:
        model, params = load_stage_model(directory, heads=("lm",), mesh=mesh)
        return runs.policy_scores(config, task, model, params, principles, seed)

    result = {
        "seed": seed,
        "data": {
            "changed": data["train"]["changed"],
            **{f"{v}_gold": gold_of(task, data["train"][v]) for v in VARIANTS},
        },
        "sft": scores(policy),
    }
    for variant in VARIANTS:
        rlaif_dir = seed_dir / "dpo" / variant
        result[variant] = {
            "sft": scores(seed_dir / f"sft_on_{variant}"),
            "rlaif": scores(rlaif_dir),
            "rlaif_kl": read_summary(rlaif_dir)["kl_to_reference"] or float("nan"),
        }
    return result


# ---------------------------------------------------------------------------------------------
# Report.


def aggregate(config, per_seed: list[dict]) -> dict:
    """Per policy: gold and each principle's score, means over seeds with 95% intervals; the
    paired differences revisions minus originals at both stages."""

    def summarise(get):
        entries = [get(r) for r in per_seed]
        return {
            "gold_reward": mean_interval([e["gold_reward"] for e in entries]),
            "objectives": [
                mean_interval([e["objectives"][i] for e in entries])
                for i in range(len(config.revision.principles))
            ],
        }

    policies = {"SFT (start)": summarise(lambda r: r["sft"])}
    for stage in ("sft", "rlaif"):
        for variant in VARIANTS:
            name = f"{'SFT' if stage == 'sft' else 'SFT + RLAIF'} on the {variant}"
            policies[name] = summarise(lambda r, v=variant, s=stage: r[v][s])
    difference = {
        stage: mean_interval(
            [
                r["revisions"][stage]["gold_reward"] - r["originals"][stage]["gold_reward"]
                for r in per_seed
            ]
        )
        for stage in ("sft", "rlaif")
    }
    data = {k: mean_interval([r["data"][k] for r in per_seed]) for k in per_seed[0]["data"]}
    return {"policies": policies, "difference": difference, "data": data}


def report(config, result: dict, timings: dict, prov: dict) -> str:
    r = config.revision
    names = list(r.principles)
    data = result["data"]
    lines = [
        "### Critique and revision, then RLAIF (Constitutional AI)",
        "",
        written_by(prov) + f"; wall time {timings['seconds/total'] / 60:.1f} min.",
        "",
        f"Per seed, the SFT policy's responses to {r.num_examples} training prompts, revised "
        f"toward {', '.join(names)} (alignax/feedback/revision.py; "
        f"{interval_text(data['changed'], 2)} of them changed; gold of the originals "
        f"{interval_text(data['originals_gold'])}, of the revisions "
        f"{interval_text(data['revisions_gold'])}); SFT from the SFT policy on each "
        f"({r.train.steps} steps of batch {r.train.batch_size}); RLAIF from each: "
        f"{config.pairs.num_pairs} pairs of its samples labelled by the judge "
        f"({runs.describe_judge(config.judge)}), DPO ({config.dpo.train.steps} steps). Each "
        f"policy's samples on {config.eval.num_prompts} held-out prompts; means over "
        f"{len(config.seeds)} seed(s) with 95% intervals.",
        "",
    ]
    rows = [
        [name, interval_text(p["gold_reward"]), *map(interval_text, p["objectives"])]
        for name, p in result["policies"].items()
    ]
    lines += table(["policy", "gold reward", *names], rows)
    d = result["difference"]
    lines += [
        "",
        "Revisions minus originals, gold reward (paired by seed): after SFT "
        f"{interval_text(d['sft'], signed=True)}, after RLAIF "
        f"{interval_text(d['rlaif'], signed=True)}.",
    ]
    return "\n".join(lines) + "\n"


def analyse(config, seeds: dict, workdir: Path) -> dict:
    per_seed = [seeds[seed] for seed in config.seeds]
    return {**aggregate(config, per_seed), "per_seed": per_seed}


PAPER = "Bai et al. (2022), the supervised stage"


def glance(result: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    difference = result["difference"]
    return [
        f"SFT on revisions minus on originals: {interval_text(difference['sft'], 2, signed=True)} "
        f"gold, after RLAIF {interval_text(difference['rlaif'], 2, signed=True)}"
    ]


def summarize(result: dict) -> dict:
    return {f"gold_reward/{name}": p["gold_reward"][0] for name, p in result["policies"].items()}


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
