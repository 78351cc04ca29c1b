"""Critique and revision (Bai et al. 2022, "Constitutional AI", the supervised stage, then RLAIF):
SFT on the policy's own responses revised toward written principles, against SFT on the same
responses unrevised, each followed by RLAIF.

    python -m experiments.critique_revision --config configs/critique_revision.py \
        --workdir runs/critique_revision

Stages, each cached in the workdir so a rerun resumes:
  1. SFT from scratch (`config.sft`), unless `labels.policy_from` names one.
  2. per seed: the SFT policy's responses to `revision.num_examples` training prompts (and
     `revision.num_eval_examples` held-out ones, the SFT runs' NLL set), each revised toward
     `revision.principles` in turn (`alignax.feedback.revise`).
  3. per seed and variant (the originals, the revisions): SFT from the SFT policy on them
     (`revision.train`), then RLAIF from that policy: pairs of its samples labelled by the AI
     judge (`judge`, as in experiments/runs.py), DPO (`config.dpo`).
  4. every policy answers `evaluation.num_prompts` held-out prompts (the same prompts and key
     for all of a seed): gold reward and each principle's score. results.md (command and commit
     first) and results.json: means over seeds with 95% intervals, and the paired differences
     revisions minus originals.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from alignax import feedback, labels
from alignax.analysis.stats import interval_text, mean_interval
from alignax.cli import run_experiment
from alignax.experiment import setup, write_summary
from alignax.feedback import runs
from alignax.provenance import provenance, written_by
from alignax.stages import load_stage_model, stage_config, stage_finished
from alignax.tasks import get_task
from alignax.workdir import cache_is_current, record_cache_key, seed_result_key
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


def sft_on(config, sft_dir: Path, run_dir: Path, seed: int, train: dict, evaluation: dict):
    """SFT from the SFT policy on `train` (LM layout), `revision.train` steps (cached)."""
    stage = stage_config(config, config.sft, {"init_from": sft_dir})
    with stage.unlocked():
        stage.train = config.revision.train.copy_and_resolve_references()
        stage.seed = seed
    if stage_finished(stage, run_dir):
        return
    keys = ("tokens", "input_mask", "loss_mask")
    sft.run(stage, run_dir, data=({k: train[k] for k in keys}, {k: evaluation[k] for k in keys}))


def rlaif_from(config, task, mesh, judge, policy_dir: Path, run_dir: Path, seed: int) -> dict:
    """Pairs of the policy's samples labelled by the judge, DPO from the policy (cached)."""
    model, params = load_stage_model(policy_dir, heads=("lm",), mesh=mesh)
    p = config.pairs
    pairs = runs.sample_pairs(config, task, model, params, p.num_pairs, seed, "train")
    held_out = runs.sample_pairs(config, task, model, params, p.num_eval_pairs, seed, "eval")
    train = runs.chosen_first(pairs, feedback.hard_labels(judge(pairs)))
    evaluation = runs.chosen_first(held_out, feedback.hard_labels(judge(held_out)))
    return runs.run_dpo(config, policy_dir, run_dir, seed, train, evaluation, task)


def seed_results(config, task, mesh, sft_dir: Path, workdir: Path, seed: int) -> dict:
    path = workdir / f"seed_{seed}.json"
    key = seed_result_key(config, seed, sft=sft_dir)
    if cache_is_current(path, key):
        return json.loads(path.read_text())
    principles = [feedback.principle(n) for n in config.revision.principles]

    def scores(directory: Path) -> dict:
        model, params = load_stage_model(directory, heads=("lm",), mesh=mesh)
        return runs.policy_scores(config, task, model, params, principles, seed)

    policy, params = load_stage_model(sft_dir, heads=("lm",), mesh=mesh)
    data = revision_data(config, task, policy, params, seed)
    judge, _ = runs.build_judge(config.judge, task, mesh, sft_dir)
    result = {
        "seed": seed,
        "data": {
            "changed": data["train"]["changed"],
            **{f"{v}_gold": gold_of(task, data["train"][v]) for v in VARIANTS},
        },
        "sft": scores(sft_dir),
    }
    for variant in VARIANTS:
        start = time.perf_counter()
        stage_dir = workdir / f"sft_on_{variant}_s{seed}"
        print(f"\n=== SFT on the {variant}, seed {seed} ===", flush=True)
        sft_on(config, sft_dir, stage_dir, seed, data["train"][variant], data["eval"][variant])
        print(f"\n=== RLAIF from SFT on the {variant}, seed {seed} ===", flush=True)
        rlaif_dir = workdir / "dpo" / f"{variant}_s{seed}"
        summary = rlaif_from(config, task, mesh, judge, stage_dir, rlaif_dir, seed)
        result[variant] = {
            "sft": scores(stage_dir),
            "rlaif": scores(rlaif_dir),
            "rlaif_kl": summary["kl_to_reference"] or float("nan"),
            "seconds": time.perf_counter() - start,
        }
    path.write_text(json.dumps(result, indent=2))
    record_cache_key(path, key)
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


def report(config, result: dict, workdir: Path, prov: dict, seconds: float) -> str:
    r = config.revision
    names = list(r.principles)
    data = result["data"]
    lines = [
        "### Critique and revision, then RLAIF (Constitutional AI)",
        "",
        written_by(prov) + f"; wall time {seconds / 60:.1f} min.",
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
        "| policy | gold reward | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for name, p in result["policies"].items():
        lines.append(
            f"| {name} | {interval_text(p['gold_reward'])} | "
            + " | ".join(interval_text(v) for v in p["objectives"])
            + " |"
        )
    d = result["difference"]
    lines += [
        "",
        "Revisions minus originals, gold reward (paired by seed): after SFT "
        f"{interval_text(d['sft'], signed=True)}, after RLAIF "
        f"{interval_text(d['rlaif'], signed=True)}.",
    ]
    text = "\n".join(lines) + "\n"
    (workdir / "results.md").write_text(text)
    return text


def run(config, workdir):
    prov = provenance()  # of the code that runs, before anything can change it
    workdir, mesh = setup(config, workdir)
    feedback.revise([], config.revision.principles, max_length=1)  # names an unknown principle
    task = get_task(config.task_name, config.task)
    start = time.perf_counter()
    sft_dir = runs.train_policy(config, workdir)
    per_seed = [seed_results(config, task, mesh, sft_dir, workdir, s) for s in config.seeds]
    seconds = time.perf_counter() - start
    result = aggregate(config, per_seed)
    (workdir / "results.json").write_text(
        json.dumps({**result, "per_seed": per_seed, "seconds": seconds}, indent=2, default=float)
    )
    print(report(config, result, workdir, prov, seconds))
    summary = {
        **{f"gold_reward/{name}": p["gold_reward"][0] for name, p in result["policies"].items()},
        "seconds": round(seconds, 1),
    }
    write_summary(workdir, summary)
    return summary


if __name__ == "__main__":
    run_experiment(run)
