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
win rate against SFT (gold decides, ties count half), KL to SFT, response length, the share of
responses that end (EOS), gold adjusted to SFT's length (policy_eval.length_controlled_gold) and
the samples' NLL under the base policy (how natural the text is, whatever gold says); PPO and
DPO compared at matched KL: every kept checkpoint of each answers the same prompts, and both
paths are read at the smaller of the two final KLs (frontier.matched_kl_gold). The report says
what PPO's reward holds besides the KL penalty (alignax.rl.describe_reward).
The table in <workdir>/results.md gives the mean over seeds with a 95% t-interval, and the
command and commit that wrote it; results.json has every seed's numbers; figures/ the plots.
"""

from __future__ import annotations

from pathlib import Path

import jax

from alignax.analysis import plots
from alignax.analysis.frontier import matched_kl_gold
from alignax.analysis.policy_eval import (
    EVAL_SEED_OFFSET,
    evaluate_policy,
    held_out_draw,
    versus_sft,
)
from alignax.analysis.report import intervals, table
from alignax.analysis.stats import interval_text, mean_interval, seed_means
from alignax.checkpoint import checkpoint_steps, restore_params
from alignax.cli import run_experiment
from alignax.experiment import pretrained_params, read_summary
from alignax.metrics import read_metrics
from alignax.models import build_model
from alignax.provenance import written_by
from alignax.rl import describe_reward
from alignax.sharding import init_params, make_mesh
from alignax.study import (
    RLHF_STAGES,
    PlannedStage,
    Study,
    check_every_checkpoint_kept,
    rlhf_stage_config,
)
from alignax.tasks import get_task

POLICIES = ("base", "sft", "ppo", "dpo")
COLUMNS = (
    "gold_reward",
    "gold_length_controlled",
    "win_rate_vs_sft",
    "kl_to_sft",
    "response_length",
    "ended_with_eos",
    "base_nll",
)
TRAINED = ("ppo", "dpo")  # the trained policies


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    """The stages of one seed: all of `RLHF_STAGES`, or without pretraining when `base_from`
    names the base policy."""
    for name in TRAINED:
        check_every_checkpoint_kept(
            config.stages[name].train,
            f"stages.{name}.train",
            f"the {name} path in KL and gold reads every one",
        )
    names = [k for k in RLHF_STAGES if not (k == "pretrain" and config.base_from)]
    return [
        PlannedStage(name, RLHF_STAGES[name].KIND, rlhf_stage_config(config, name, seed, seed_dir))
        for name in names
    ]


def evaluate_seed(config, seed: int, seed_dir: Path):
    """Every policy's row of `versus_sft` on held-out prompts, each policy's response to the
    first prompt, and the (step, KL, gold) path of PPO and DPO through their kept checkpoints on
    the same prompts, from SFT at KL 0."""
    mesh = make_mesh(config.mesh)
    task = get_task(config.task_name, config.task)
    model = build_model(config.model, heads=("lm",))
    like = init_params(model, jax.random.key(0), mesh)

    def restore(name, step=None):
        return restore_params(seed_dir / name / "checkpoints", like, step=step)

    policies = {
        "base": (
            pretrained_params(config.base_from, config.model, mesh, like)
            if config.base_from
            else restore_params(seed_dir / "pretrain" / "checkpoints", like)
        ),
        "sft": restore_params(seed_dir / "sft" / "checkpoints", like),
        **{name: restore(name) for name in TRAINED},
    }
    prompts, rng = held_out_draw(task, config.eval.num_prompts, seed + EVAL_SEED_OFFSET)

    def evaluate(params, base=None):
        return evaluate_policy(
            model,
            params,
            task,
            prompts,
            rng,
            ref_params=policies["sft"],
            base_params=base,
            max_new_tokens=config.eval.max_new_tokens,
        )

    results = {name: evaluate(params, policies["base"]) for name, params in policies.items()}
    paths = {}
    for name in TRAINED:  # the paths read KL and gold alone: no NLL under the base
        *earlier, last = checkpoint_steps(seed_dir / name / "checkpoints")
        points = {step: evaluate(restore(name, step)) for step in earlier} | {last: results[name]}
        paths[name] = [{"step": 0, "kl": 0.0, "gold": float(results["sft"]["gold"].mean())}] + [
            {"step": step, "kl": float(r["kl"].mean()), "gold": float(r["gold"].mean())}
            for step, r in points.items()
        ]
    return versus_sft(results), {name: r["texts"][0] for name, r in results.items()}, paths


def analyse(config, seeds: dict, workdir: Path) -> dict:
    """Every seed's table, their means with 95% intervals, the reward models' held-out metrics,
    the example responses of the first seed; the figure."""
    tables = {seed: table for seed, (table, _, _) in seeds.items()}
    combined = seed_means(tables)
    paths = {seed: paths for seed, (_, _, paths) in seeds.items()}
    matched = {seed: matched_kl_gold(p) for seed, p in paths.items()}
    differences = [m["dpo"] - m["ppo"] for m in matched.values()]
    reward_models = [read_summary(workdir / f"seed{s}" / "reward_model") for s in tables]
    plot(workdir, tables, combined)
    return {
        "seeds": tables,
        "combined": combined,
        "reward_model": {
            key: mean_interval([rm[key] for rm in reward_models])
            for key in ("accuracy", "gold_accuracy", "gold_spearman", "calibration_error")
        },
        "examples": next(iter(seeds.values()))[1],
        "paths": paths,
        "matched_kl": {
            "seeds": matched,
            "kl": mean_interval([m["kl"] for m in matched.values()]),
            "ppo": mean_interval([m["ppo"] for m in matched.values()]),
            "dpo": mean_interval([m["dpo"] for m in matched.values()]),
            "dpo_minus_ppo": mean_interval(differences),
        },
    }


def _gold_description(config) -> list[str]:
    """For a task whose gold reward is a learned classifier (IMDb), what it is and how often
    it is right on reviews it never saw; nothing for the built-in tasks."""
    task = get_task(config.task_name, config.task)
    if "learned_gold" not in task.capabilities:
        return []
    return [task.describe_gold(), ""]


def report(config, results: dict, timings: dict, prov: dict) -> str:
    tables, combined = results["seeds"], results["combined"]
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
        "gold reward judges. Mean over seeds ± 95% t-interval. Gold at SFT's length: each "
        "policy's mean gold adjusted to the SFT policy's mean length (one gold-on-length slope "
        "pooled within policies); ended: the share of responses that end with EOS rather than "
        "at the length cap; NLL under base: the responses' mean per-token negative "
        "log-likelihood under the base policy (nats; gibberish scores high whatever its gold). "
        + describe_reward(config.stages.ppo.ppo),
        "",
        *_gold_description(config),
    ]
    header = ["policy", "gold reward", "gold at SFT's length", "win rate vs SFT"]
    header += ["KL to SFT (nats)", "length", "ended", "NLL under base"]
    columns = [(column, 2) for column in COLUMNS]
    lines += table(header, ([name, *intervals(combined[name], columns)] for name in POLICIES))
    m = results["matched_kl"]
    lines += [
        "",
        "At matched KL (each seed's PPO and DPO paths, through every kept checkpoint on the "
        "same prompts from SFT at KL 0, read at the smaller of their final KLs: the run that "
        "ends there at its end, the other where it first reaches it, between checkpoints; "
        f"{interval_text(m['kl'], 2)} nats): gold PPO {interval_text(m['ppo'], 2)}, DPO "
        f"{interval_text(m['dpo'], 2)}; DPO - PPO "
        f"{interval_text(m['dpo_minus_ppo'], 2, signed=True)} (paired by seed).",
        "",
        "Reward model (held-out pairs of SFT samples): "
        + ", ".join(
            f"{k.replace('_', ' ')} {interval_text(v, 2)}"
            for k, v in results["reward_model"].items()
        )
        + ".",
        "",
        f"Example responses (seed {next(iter(tables))}, first held-out prompt):",
        "",
    ]
    lines += [f"- **{name}**: {text}" for name, text in results["examples"].items()]
    return "\n".join(lines) + "\n"


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


PAPER = "Ouyang et al. (2022), Rafailov et al. (2023)"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    combined, matched = results["combined"], results["matched_kl"]
    return [
        *(
            f"{policy.upper()} wins {interval_text(combined[policy]['win_rate_vs_sft'], 2)} "
            f"against SFT (gold {interval_text(combined[policy]['gold_reward'], 2)}, SFT "
            f"{interval_text(combined['sft']['gold_reward'], 2)})"
            for policy in ("ppo", "dpo")
        ),
        f"at matched KL ({interval_text(matched['kl'], 2)} nats) DPO - PPO gold "
        f"{interval_text(matched['dpo_minus_ppo'], 2, signed=True)}",
    ]


def summarize(results: dict) -> dict:
    return {
        f"{policy}/{key}": mean
        for policy, row in results["combined"].items()
        for key, (mean, _) in row.items()
    }


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
