"""Judge drift on arithmetic: does a learned judge stay honest while a policy is trained on it,
and does an alarm grounded in a verifier see it go (the Kimi K2 idea of keeping a critic
grounded in verifiable rewards)?

    python -m experiments.judge_drift --config configs/judge_drift.py --workdir runs/judge_drift

Stages (each in <workdir>/seed<k>/<stage>, each resumable), for every seed in `config.seeds`:
  1. sft           the arithmetic task's exact-answer demonstrations, training problems only
  2. reward_model  the judge: pairs of SFT answers to training problems, labelled by a
                   Bradley-Terry annotator of the exact-match verifier, from the SFT policy
  3. ppo_beta<b>   PPO against the judge at each fixed KL coefficient b in `config.betas`; at every
                   evaluation the judge scores the policy's answer to each held-out problem and the
                   verified answer, and its accuracy on the pairs the verifier separates (the
                   policy's answer is wrong) drives the drift alarm (alignax/feedback/drift.py)
     verifier      with `verifier_control`, PPO against the verifier itself at betas[0], the
                   judge watched the same way but never optimised: the control
The alarm's threshold is calibrated on the control, cross-fitted over seeds: seed k's threshold
is the lowest judge accuracy any other seed's control run showed
(`feedback.calibrated_thresholds`), and the alarms of seed k's runs, its control included (a
false alarm), are replayed on their logged curves at that threshold with the configured patience
(`feedback.first_alarm`). The in-run alarm at the configured
`judge_drift.min_accuracy` is reported beside it. The report (results.md, command and commit
first; results.json; figures/judge_drift.{png,pdf}) gives, per run kind, held-out accuracy (the
verifier's reward) at the start, at its best and at the end, the judge's accuracy at the start
and the end, the alarms and the step they fired: means over seeds with 95% intervals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignax import feedback
from alignax.analysis import plots
from alignax.analysis.report import table
from alignax.analysis.stats import interval_text, mean_interval
from alignax.cli import run_experiment
from alignax.experiment import read_summary
from alignax.metrics import read_metrics
from alignax.provenance import written_by
from alignax.rl import describe_reward
from alignax.study import PlannedStage, Study, seed_stage_config
from alignax.workflows import ppo, reward_model, sft


def run_names(config) -> list[str]:
    """The PPO runs of a seed: one per beta against the judge, then the verifier control."""
    names = [f"ppo_beta{b:g}" for b in config.betas]
    return names + ["verifier"] * bool(config.verifier_control)


def run_label(name: str) -> str:
    """'ppo_beta0.1' -> 'beta 0.1'."""
    return "beta " + name.removeprefix("ppo_beta")


def stage_of_seed(config, name: str, seed: int, seed_dir: Path):
    """Stage `name` of one seed: the shared sections, that seed, the links to upstream stages;
    the PPO runs get their reward source and KL coefficient."""
    stage = {"sft": "sft", "reward_model": "reward_model"}.get(name, "ppo")
    links = {
        "sft": {},
        "reward_model": {"labels.policy_from": seed_dir / "sft", "init_from": seed_dir / "sft"},
        "ppo": {
            "init_from": seed_dir / "sft",
            "rewards.reward_model_from": seed_dir / "reward_model",
        },
    }[stage]
    out = seed_stage_config(config, stage, seed, links)
    with out.unlocked():
        if name == "verifier":  # the judge stays in rewards.reward_model_from, watched only
            out.rewards.source = "gold"
            out.ppo.kl_coef = float(config.betas[0])
        elif stage == "ppo":
            out.ppo.kl_coef = float(name.removeprefix("ppo_beta"))
    return out


def trajectory(run_dir: Path) -> dict[str, list[float]]:
    """The evaluations of a PPO run in step order: step, held-out accuracy (gold), the judge's
    reward (proxy), KL to SFT and, when tracked, the judge's accuracy (nan where undefined)."""
    rows = {m["step"]: m for m in read_metrics(run_dir) if "eval/gold" in m}
    steps = sorted(rows)
    column = lambda key: [float(rows[s].get(key, float("nan"))) for s in steps]  # noqa: E731
    return {
        "step": [float(s) for s in steps],
        "gold": column("eval/gold"),
        "proxy": column("eval/proxy"),
        "kl": column("eval/kl"),
        "judge_accuracy": column("eval/judge_accuracy"),
    }


def run_outcome(curve: dict, summary: dict, threshold: float, patience: int) -> dict:
    """One run's numbers: accuracy at the start, best (and its step), at the alarm and the end;
    the judge's accuracy at the start and the end; the step the in-run alarm fired at the
    configured threshold and the step it fires at the calibrated `threshold` (nan: never)."""
    gold = np.asarray(curve["gold"])
    best = int(np.argmax(gold))
    alarm = summary.get("judge_drift_step")
    calibrated = feedback.first_alarm(curve["step"], curve["judge_accuracy"], threshold, patience)
    at_alarm = float(gold[curve["step"].index(calibrated)]) if np.isfinite(calibrated) else np.nan
    return {
        "gold_start": float(gold[0]),
        "gold_best": float(gold[best]),
        "best_step": curve["step"][best],
        "gold_end": float(gold[-1]),
        "kl_end": float(curve["kl"][-1]),
        "judge_start": float(curve["judge_accuracy"][0]),
        "judge_end": float(curve["judge_accuracy"][-1]),
        "alarm_step_configured": float(alarm) if alarm is not None else np.nan,
        "alarm_step": calibrated,
        "threshold": threshold,
        "gold_at_alarm": at_alarm,
    }


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    """SFT, the judge, then the PPO runs (each evaluated at step 0 too)."""
    if not config.betas:
        raise ValueError("betas=(): at least one PPO run against the judge")
    planned = [
        PlannedStage(name, module.KIND, stage_of_seed(config, name, seed, seed_dir))
        for name, module in (("sft", sft), ("reward_model", reward_model))
    ]
    return planned + [
        PlannedStage(
            name,
            ppo.KIND,
            stage_of_seed(config, name, seed, seed_dir),
            {"evaluate_at_start": True},
        )
        for name in run_names(config)
    ]


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """Every PPO run's curve and run summary (the outcomes need every seed's control)."""
    return {
        name: {"curve": trajectory(seed_dir / name), "summary": read_summary(seed_dir / name)}
        for name in run_names(config)
    }


def outcomes(config, per_seed: dict) -> dict:
    """Seed -> run -> its curve and `run_outcome`, at the seed's calibrated threshold (the
    configured one without a control)."""
    patience = config.stages.ppo.judge_drift.patience
    configured = config.stages.ppo.judge_drift.min_accuracy
    if config.verifier_control:
        thresholds = feedback.calibrated_thresholds(
            {s: runs["verifier"]["curve"]["judge_accuracy"] for s, runs in per_seed.items()},
            default=configured,
        )
    else:
        thresholds = dict.fromkeys(per_seed, configured)
    return {
        seed: {
            name: {
                "curve": run["curve"],
                **run_outcome(run["curve"], run["summary"], thresholds[seed], patience),
            }
            for name, run in runs.items()
        }
        for seed, runs in per_seed.items()
    }


OUTCOMES = (
    "gold_start",
    "gold_best",
    "gold_end",
    "kl_end",
    "judge_start",
    "judge_end",
    "alarm_step",
    "gold_at_alarm",
    "threshold",
)


def aggregate(config, per_seed: dict) -> dict:
    """Per run: each outcome's mean over seeds with a 95% interval (over the seeds where it is
    defined), and how many seeds' alarms fired."""
    out = {}
    for name in run_names(config):
        runs = [per_seed[s][name] for s in per_seed]
        row = {}
        for key in OUTCOMES:
            values = [r[key] for r in runs if np.isfinite(r[key])]
            row[key] = mean_interval(values) if values else (float("nan"), float("nan"))
        row["alarms"] = sum(np.isfinite(r["alarm_step"]) for r in runs)
        row["alarms_configured"] = sum(np.isfinite(r["alarm_step_configured"]) for r in runs)
        if config.verifier_control and name != "verifier":
            row["gold_end_vs_verifier"] = mean_interval(
                [
                    per_seed[s][name]["gold_end"] - per_seed[s]["verifier"]["gold_end"]
                    for s in per_seed
                ]
            )
        out[name] = row
    return out


def figure(config, per_seed: dict, workdir: Path) -> None:
    """Held-out accuracy (left) and the judge's accuracy on verified pairs (right) against the
    PPO iteration, each seed a line; the configured and calibrated thresholds and the steps of
    the calibrated alarms marked."""
    fig, (left, right) = plots.subplots(1, 2, figsize=(9.6, 3.6))
    threshold = config.stages.ppo.judge_drift.min_accuracy
    for i, name in enumerate(run_names(config)):
        color = plots.series_color(i)
        label = (
            "PPO on the verifier" if name == "verifier" else f"PPO on the judge, {run_label(name)}"
        )
        for j, seed in enumerate(per_seed):
            run = per_seed[seed][name]
            curve = run["curve"]
            left.plot(curve["step"], curve["gold"], "-", color=color, alpha=0.8,
                      label=label if j == 0 else None)  # fmt: skip
            right.plot(curve["step"], curve["judge_accuracy"], "-", color=color, alpha=0.8,
                       label=label if j == 0 else None)  # fmt: skip
            if np.isfinite(run["alarm_step"]):
                for ax in (left, right):
                    ax.axvline(run["alarm_step"], color=color, linestyle=":", linewidth=1)
    right.axhline(threshold, color="black", linestyle="--", linewidth=1,
                  label="configured threshold")  # fmt: skip
    calibrated = sorted({runs[name]["threshold"] for runs in per_seed.values()})
    for k, value in enumerate(calibrated):
        right.axhline(value, color="grey", linestyle="-.", linewidth=1,
                      label="calibrated thresholds (per seed)" if k == 0 else None)  # fmt: skip
    right.plot([], [], ":", color="grey", label="alarm fired (calibrated)")
    left.set(xlabel="PPO iteration", ylabel="held-out accuracy (verifier)",
             title="What the policy gets right")  # fmt: skip
    right.set(xlabel="PPO iteration", ylabel="judge accuracy, policy vs verified answer",
              ylim=(-0.02, 1.02), title="Whether the judge still knows")  # fmt: skip
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    plots.save(fig, workdir / "figures" / "judge_drift")


def analyse(config, seeds: dict, workdir: Path) -> dict:
    per_seed = outcomes(config, seeds)
    figure(config, per_seed, workdir)
    return {"runs": aggregate(config, per_seed), "per_seed": per_seed}


def report(config, results: dict, timings: dict, prov: dict) -> str:
    drift = config.stages.ppo.judge_drift
    seeds = len(config.seeds)
    result = results["runs"]
    lines = [
        "### Judge drift on arithmetic: a learned judge against the verifier",
        "",
        written_by(prov) + f"; wall time {timings['seconds/total'] / 60:.1f} min.",
        "",
        f"Judge: a reward model on {config.stages.reward_model.pairs.num_pairs:,} pairs of "
        "SFT answers labelled by a Bradley-Terry annotator of the exact-match verifier. PPO "
        f"({config.stages.ppo.train.steps} iterations, fixed KL coefficient) against the judge, "
        "and against the verifier as the control. At every evaluation the judge compares the "
        f"policy's answer to each of {config.stages.ppo.eval.num_prompts} held-out "
        "problems with the verified answer; its accuracy on the pairs where the policy is wrong "
        f"raises the alarm when below the threshold at {drift.patience} evaluations in a row. "
        "The control watches the judge the same way without optimising it, and calibrates the "
        "threshold: each seed's is the lowest judge accuracy the other seeds' control runs "
        f"showed ({threshold_text(results['per_seed'])}), so the control's own alarms are "
        "false alarms at a threshold it did not set. Beside it, the in-run alarm at the "
        f"configured {drift.min_accuracy:g}. Means over {seeds} seed(s) with 95% intervals; "
        "accuracy is the verifier's. " + describe_reward(config.stages.ppo.ppo),
        "",
    ]

    def cell(row, key, digits=3):  # "–" where no seed defines it (no alarm fired)
        return interval_text(row[key], digits) if np.isfinite(row[key][0]) else "–"

    header = ["run", "accuracy at start", "best", "end", "KL to SFT at end"]
    header += ["judge accuracy at start", "at end", "alarms", "alarm at iteration"]
    header += ["accuracy at the alarm", f"alarms at {drift.min_accuracy:g}"]
    rows = [
        [
            "verifier (control)" if name == "verifier" else f"judge, {run_label(name)}",
            cell(row, "gold_start"),
            cell(row, "gold_best"),
            cell(row, "gold_end"),
            cell(row, "kl_end", 2),
            cell(row, "judge_start"),
            cell(row, "judge_end"),
            f"{row['alarms']}/{seeds}",
            cell(row, "alarm_step", 0),
            cell(row, "gold_at_alarm"),
            f"{row['alarms_configured']}/{seeds}",
        ]
        for name, row in result.items()
    ]
    lines += table(header, rows)
    if "verifier" in result:
        lines += [
            "",
            "Accuracy at the end, against the verifier control (paired by seed): "
            + ", ".join(
                f"{run_label(name)} {interval_text(row['gold_end_vs_verifier'], signed=True)}"
                for name, row in result.items()
                if name != "verifier"
            )
            + ".",
        ]
    return "\n".join(lines) + "\n"


def threshold_text(per_seed: dict) -> str:
    """'seed 0: 0.41, seed 1: 0.38, ...': each seed's alarm threshold."""
    return ", ".join(
        f"seed {seed}: {next(iter(runs.values()))['threshold']:.3f}"
        for seed, runs in per_seed.items()
    )


PAPER = "Kimi K2 (2025): a critic grounded in verifiable rewards"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    seeds = len(results["per_seed"])
    return [
        f"PPO on the judge ({name.removeprefix('ppo_').replace('beta', 'beta ')}) ends "
        f"{interval_text(run['gold_end_vs_verifier'], 2, signed=True)} in accuracy from the "
        f"verifier control, alarm in {run['alarms']} of {seeds} seeds"
        for name, run in results["runs"].items()
        if name != "verifier"
    ]


def summarize(results: dict) -> dict:
    return {
        f"{name}/{key}": row[key][0]
        for name, row in results["runs"].items()
        for key in ("gold_end", "judge_end", "alarm_step")
    }


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
