"""The whole RLHF pipeline on the built-in task, InstructGPT-style, over several seeds.

    python -m experiments.pipeline --config configs/pipeline.py:runlocal --workdir runs/pipeline

Stages (each in <workdir>/seed<k>/<stage>, each resumable), for every seed in `config.seeds`:
  1. pretrain      a tiny LM on generator text                    -> the base policy
                   (skipped with `base_from`: a pretrained checkpoint, a Hugging Face
                   directory or a GGUF file of `config.model`'s shape, is the base policy)
  2. sft           best-of-8 (by gold) demonstrations              -> the SFT / reference policy
  3. reward_model  Bradley-Terry on annotator-labelled pairs of SFT samples -> the proxy reward
                   (its own model size: `stages.reward_model.model`)
  4. ppo           PPO against the reward model, KL to SFT         (from SFT)
  5. dpo           DPO on pairs of SFT samples                     (from SFT)
Evaluation: for base, SFT, PPO and DPO, samples on held-out prompts scored by the gold reward;
win rate against SFT (gold decides, ties count half), KL to SFT and response length. The table
in <workdir>/results.md gives the mean over seeds with a 95% t-interval, and the command and
commit that wrote it; results.json has every seed's numbers; figures/ the plots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from alignax.analysis import plots
from alignax.analysis.policy_eval import evaluate_policy
from alignax.analysis.stats import interval_text, mean_interval
from alignax.checkpoint import restore_params
from alignax.cli import run_experiment
from alignax.experiment import pretrained_params, setup, validate_config, write_summary
from alignax.metrics import read_metrics
from alignax.models import build_model
from alignax.provenance import provenance, written_by
from alignax.sharding import init_params
from alignax.stages import SHARED_SECTIONS, stage_config
from alignax.tasks import get_task
from alignax.workdir import check_config_unchanged
from experiments import dpo, ppo, reward_model, sft

STAGES = {"pretrain": sft, "sft": sft, "reward_model": reward_model, "ppo": ppo, "dpo": dpo}
POLICIES = ("base", "sft", "ppo", "dpo")
COLUMNS = ("gold_reward", "win_rate_vs_sft", "kl_to_sft", "response_length")


def stages(config) -> dict:
    """The stages this config runs: all of them, or without pretraining when `base_from` names
    the base policy."""
    return {k: v for k, v in STAGES.items() if not (k == "pretrain" and config.base_from)}


def seed_stage_config(config, name: str, seed: int, workdir: Path):
    """Stage `name` of seed `seed`: the pipeline's shared sections (the reward model keeps its
    own model), that seed, and the links to the stages it builds on."""
    # (dpo_frontier and instructgpt build their stages here too; their configs have no base_from)
    base = config.get("base_from") or workdir / "pretrain"
    links = {
        "pretrain": {},
        "sft": {"init_from": base},
        "reward_model": {"labels.policy_from": workdir / "sft"},
        "ppo": {
            "init_from": workdir / "sft",
            "rewards.reward_model_from": workdir / "reward_model",
        },
        "dpo": {"init_from": workdir / "sft", "labels.policy_from": workdir / "sft"},
    }[name]
    stage = config.stages[name]
    shared = tuple(k for k in SHARED_SECTIONS if k != "seed")
    if name == "reward_model":
        shared = tuple(k for k in shared if k != "model")
        # Start from the pretrained backbone when the reward model has the policy's shape.
        if stage.model.to_dict() == config.model.to_dict():
            links["init_from"] = base
    out = stage_config(config, stage, links, shared, name=f"stages.{name}")
    with out.unlocked():
        out.seed = seed
    return out


def _win_rate(gold, baseline_gold):
    return float(np.mean((gold > baseline_gold) + 0.5 * (gold == baseline_gold)))


def evaluate(config, seed: int, workdir: Path, mesh):
    """Gold reward, win rate vs SFT, KL to SFT and length of every policy, on held-out prompts."""
    task = get_task(config.task_name, config.task)
    model = build_model(config.model, heads=("lm",))
    like = init_params(model, jax.random.key(0), mesh)
    policies = {
        "base": (
            pretrained_params(config.base_from, config.model, mesh, like)
            if config.base_from
            else restore_params(workdir / "pretrain" / "checkpoints", like)
        ),
        "sft": restore_params(workdir / "sft" / "checkpoints", like),
        "ppo": restore_params(workdir / "ppo" / "checkpoints", {"policy": like})["policy"],
        "dpo": restore_params(workdir / "dpo" / "checkpoints", like),
    }
    prompts = task.prompt_dataset(config.eval.num_prompts, seed=seed + 100, split="eval")
    rng = jax.random.key(seed + 100)
    results = {
        name: evaluate_policy(
            model,
            params,
            task,
            prompts,
            rng,
            ref_params=policies["sft"],
            max_new_tokens=config.eval.max_new_tokens,
        )
        for name, params in policies.items()
    }
    table = {
        name: {
            "gold_reward": float(r["gold"].mean()),
            "win_rate_vs_sft": _win_rate(r["gold"], results["sft"]["gold"]),
            "kl_to_sft": float(r["kl"].mean()),
            "response_length": float(r["length"].mean()),
            "ended_with_eos": float(r["ended_with_eos"].mean()),
        }
        for name, r in results.items()
    }
    return table, {name: r["texts"][0] for name, r in results.items()}


def aggregate(tables: dict[int, dict]) -> dict:
    """policy -> metric -> (mean, 95% half-width) over seeds."""
    return {
        policy: {
            key: mean_interval([tables[s][policy][key] for s in tables])
            for key in tables[next(iter(tables))][policy]
        }
        for policy in POLICIES
    }


def _gold_description(config) -> list[str]:
    """For a task whose gold reward is a learned classifier (IMDb), what it is and how often
    it is right on reviews it never saw; nothing for the built-in tasks."""
    task = get_task(config.task_name, config.task)
    if "learned_gold" not in task.capabilities:
        return []
    return [task.describe_gold(), ""]


def write_report(
    config, workdir: Path, tables: dict, examples: dict, timings: dict, prov: dict
) -> dict:
    combined = aggregate(tables)
    seeds = ", ".join(map(str, tables))
    lines = [
        "### Pipeline: "
        + ("pretrained base" if config.base_from else "pretrain")
        + " -> SFT -> reward model -> PPO / DPO",
        "",
        written_by(prov)
        + f"; {len(tables)} seeds ({seeds}), wall time {timings['seconds/total'] / 60:.1f} min "
        f"({timings['seconds/total'] / 60 / len(tables):.1f} min a seed).",
        "",
        f"Each policy answers {config.eval.num_prompts} held-out prompts (never trained on); the "
        "gold reward judges. Mean over seeds ± 95% t-interval.",
        "",
        *_gold_description(config),
        "| policy | gold reward | win rate vs SFT | KL to SFT (nats) | length |",
        "|---|---|---|---|---|",
    ]
    for name in POLICIES:
        cells = [interval_text(combined[name][c], 2) for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    reward_models = {
        s: json.loads((workdir / f"seed{s}" / "reward_model" / "summary.json").read_text())
        for s in tables
    }
    rm = {
        key: mean_interval([reward_models[s][key] for s in tables])
        for key in ("accuracy", "gold_accuracy", "gold_spearman", "calibration_error")
    }
    lines += [
        "",
        "Reward model (held-out pairs of SFT samples): "
        + ", ".join(f"{k.replace('_', ' ')} {interval_text(v, 2)}" for k, v in rm.items())
        + ".",
        "",
        f"Example responses (seed {next(iter(tables))}, first held-out prompt):",
        "",
    ]
    lines += [f"- **{name}**: {text}" for name, text in examples.items()]
    (workdir / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(workdir, tables, combined)
    return combined


def plot(workdir: Path, tables: dict, combined: dict) -> None:
    fig, (left, right) = plots.subplots(1, 2, figsize=(9, 3.4))
    for i, seed in enumerate(tables):
        log = [m for m in read_metrics(workdir / f"seed{seed}" / "ppo") if "gold/mean" in m]
        step = [m["step"] for m in log]
        kw = dict(alpha=0.8, linewidth=1)
        left.plot(
            step,
            [m["proxy/mean"] for m in log],
            color=plots.PALETTE[0],
            **kw,
            label="proxy (reward model)" if i == 0 else None,
        )
        left.plot(
            step,
            [m["gold/mean"] for m in log],
            color=plots.PALETTE[1],
            **kw,
            label="gold" if i == 0 else None,
        )
        left.plot(
            step,
            [m["kl/sequence"] for m in log],
            ":",
            color=plots.PALETTE[7],
            **kw,
            label="KL to SFT (nats)" if i == 0 else None,
        )
    left.set(
        xlabel="PPO iteration",
        ylabel="rollout mean (one line per seed)",
        title="PPO: proxy, gold and KL",
    )
    left.legend()
    means = [combined[n]["gold_reward"][0] for n in POLICIES]
    halves = [combined[n]["gold_reward"][1] for n in POLICIES]
    right.bar(POLICIES, means, yerr=halves, capsize=3, color=plots.PALETTE[2])
    right.set(ylabel="gold reward (95% interval over seeds)", title="Policies, held-out prompts")
    plots.save(fig, workdir / "figures" / "pipeline")


def plan(config, workdir: Path) -> dict[int, dict]:
    """seed -> stage name -> the stage's config, for every stage of the run, built and checked
    before anything runs: a refused link override, or a stage that holds checkpoints of another
    config (which its own start would refuse), stops the run before it writes or computes
    anything."""
    validate_config(config)
    stage_configs = {
        seed: {
            name: seed_stage_config(config, name, seed, workdir / f"seed{seed}")
            for name in stages(config)
        }
        for seed in config.seeds
    }
    for seed, configs in stage_configs.items():
        for name, stage in configs.items():
            check_config_unchanged(stage, workdir / f"seed{seed}" / name)
    return stage_configs


def run(config, workdir):
    prov = provenance()  # of the code that runs, before anything can change it
    stage_configs = plan(config, Path(workdir))
    workdir, mesh = setup(config, workdir)
    timings, tables, examples = {}, {}, {}
    start = time.perf_counter()
    for seed in config.seeds:
        seed_dir = workdir / f"seed{seed}"
        for name, module in stages(config).items():
            print(f"\n=== seed {seed}, stage {name} ===", flush=True)
            mark = time.perf_counter()
            module.run(stage_configs[seed][name], seed_dir / name)
            key = f"seconds/{name}"
            timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - mark, 1)
        tables[seed], seed_examples = evaluate(config, seed, seed_dir, mesh)
        examples = examples or seed_examples
    timings["seconds/total"] = round(time.perf_counter() - start, 1)
    combined = write_report(config, workdir, tables, examples, timings, prov)
    (workdir / "results.json").write_text(json.dumps({"seeds": tables, **timings}, indent=2))
    summary = {
        f"{policy}/{key}": mean
        for policy, row in combined.items()
        for key, (mean, _) in row.items()
    }
    summary.update(timings)
    write_summary(workdir, summary)
    return summary


if __name__ == "__main__":
    run_experiment(run)
