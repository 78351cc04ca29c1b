"""The whole RLHF pipeline on the built-in task, InstructGPT-style, then an evaluation table.

    python -m experiments.pipeline --config configs/pipeline.py:runlocal --workdir runs/pipeline

Stages (each in <workdir>/<stage>, each resumable):
  1. pretrain      a tiny LM on generator text                    -> the base policy
  2. sft           best-of-8 (by gold) demonstrations              -> the SFT / reference policy
  3. reward_model  Bradley-Terry on simulated-annotator pairs      -> the proxy reward
  4. ppo           PPO against the reward model, KL to SFT         (from SFT)
  5. dpo           DPO on the same kind of pairs                   (from SFT)
Evaluation: for base, SFT, PPO and DPO, samples on held-out prompts scored by the gold reward;
win rate against SFT (gold decides, ties count half), KL to SFT and response length. Writes
<workdir>/summary.json, results.md and results.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from alignax.analysis.policy_eval import evaluate_policy
from alignax.checkpoint import restore_params
from alignax.cli import run_experiment
from alignax.metrics import read_metrics
from alignax.models import build_model
from alignax.sharding import init_params
from alignax.tasks import get_task
from alignax.training import setup, write_summary
from experiments import dpo, ppo, reward_model, sft

STAGES = {"pretrain": sft, "sft": sft, "reward_model": reward_model, "ppo": ppo, "dpo": dpo}
SHARED_SECTIONS = ("seed", "multihost", "task_name", "task", "model", "mesh")


def stage_config(config, name: str, workdir: Path):
    """The stage's config with the pipeline's shared sections and the stage-to-stage links."""
    stage = config.stages[name].copy_and_resolve_references()
    links = {
        "pretrain": {},
        "sft": {"init_from": workdir / "pretrain"},
        "reward_model": {"init_from": workdir / "pretrain"},
        "ppo": {
            "init_from": workdir / "sft",
            "rewards.reward_model_from": workdir / "reward_model",
        },
        "dpo": {"init_from": workdir / "sft"},
    }[name]
    with stage.unlocked():
        for key in SHARED_SECTIONS:
            stage[key] = config[key]
        for key, value in links.items():
            section, _, leaf = key.rpartition(".")
            (stage[section] if section else stage)[leaf] = str(value)
    return stage


def _win_rate(gold, baseline_gold):
    return float(np.mean((gold > baseline_gold) + 0.5 * (gold == baseline_gold)))


def evaluate(config, workdir: Path, mesh):
    """Gold reward, win rate vs SFT, KL to SFT and length of every policy, on shared prompts."""
    task = get_task(config.task_name, config.task)
    model = build_model(config.model, heads=("lm",))
    like = init_params(model, jax.random.key(0), mesh)
    policies = {
        name: restore_params(workdir / name / "checkpoints", like)
        for name in ("pretrain", "sft", "dpo")
    }
    ppo_params = restore_params(workdir / "ppo" / "checkpoints", {"policy": like})["policy"]
    policies = {
        "base": policies["pretrain"],
        "sft": policies["sft"],
        "ppo": ppo_params,
        "dpo": policies["dpo"],
    }
    prompts = task.prompt_dataset(config.eval.num_prompts, seed=config.seed + 100)
    rng = jax.random.key(config.seed + 100)
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
            "gold_reward_se": float(r["gold"].std() / np.sqrt(len(r["gold"]))),
            "win_rate_vs_sft": _win_rate(r["gold"], results["sft"]["gold"]),
            "kl_to_sft": float(r["kl"].mean()),
            "response_length": float(r["length"].mean()),
            "ended_with_eos": float(r["ended_with_eos"].mean()),
        }
        for name, r in results.items()
    }
    return table, {name: r["texts"][0] for name, r in results.items()}


def write_report(workdir: Path, table: dict, examples: dict) -> None:
    columns = ("gold_reward", "win_rate_vs_sft", "kl_to_sft", "response_length")
    lines = [
        "| policy | gold reward | win rate vs SFT | KL to SFT (nats) | length |",
        "|---|---|---|---|---|",
    ]
    for name, row in table.items():
        lines.append(
            f"| {name} | {row['gold_reward']:.2f} ± {row['gold_reward_se']:.2f} | "
            + " | ".join(f"{row[c]:.2f}" for c in columns[1:])
            + " |"
        )
    lines += ["", "Example responses (first evaluation prompt):", ""]
    lines += [f"- **{name}**: {text}" for name, text in examples.items()]
    (workdir / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    ppo_log = [m for m in read_metrics(workdir / "ppo") if "gold/mean" in m]
    iterations = [m["step"] for m in ppo_log]
    left.plot(iterations, [m["proxy/mean"] for m in ppo_log], ".-", label="proxy (reward model)")
    left.plot(iterations, [m["gold/mean"] for m in ppo_log], ".-", label="gold")
    left.set(
        xlabel="PPO iteration",
        ylabel="reward of rollouts (z-scored)",
        title="PPO: proxy and gold reward, KL to SFT",
    )
    left.legend(loc="lower right")
    kl_axis = left.twinx()
    kl_axis.plot(iterations, [m["kl/sequence"] for m in ppo_log], "k:", label="KL")
    kl_axis.set_ylabel("KL to SFT (nats, dotted)")
    names = list(table)
    right.bar(
        names,
        [table[n]["gold_reward"] for n in names],
        yerr=[table[n]["gold_reward_se"] for n in names],
        color="tab:green",
    )
    right.set(ylabel="gold reward of samples", title="Policies on held-out prompts")
    fig.tight_layout()
    fig.savefig(workdir / "results.png", dpi=120)
    plt.close(fig)


def run(config, workdir):
    workdir, mesh = setup(config, workdir)
    timings = {}
    for name, module in STAGES.items():
        print(f"\n=== stage {name} ===", flush=True)
        start = time.perf_counter()
        module.run(stage_config(config, name, workdir), workdir / name)
        timings[f"seconds/{name}"] = round(time.perf_counter() - start, 1)
    table, examples = evaluate(config, workdir, mesh)
    write_report(workdir, table, examples)
    summary = {f"{policy}/{k}": v for policy, row in table.items() for k, v in row.items()}
    summary.update(timings)
    write_summary(workdir, summary)
    return summary


if __name__ == "__main__":
    run_experiment(run)
