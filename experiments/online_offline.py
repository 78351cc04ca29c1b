"""Online against offline preference learning: offline DPO, online (iterative) DPO and PPO on a
reward model, each spending the same labels; which dominates at which budget?

    python -m experiments.online_offline --config configs/online_offline.py \
        --workdir runs/online_offline

Stages (each in <workdir>/seed<k>/<stage>, each resumable), for every seed in `config.seeds`:
pretrain -> sft, then per label budget B of `budgets`: offline_b<B> (DPO on B pairs of SFT
samples), online_b<B>_r<r> for r = 1 .. `online.rounds` (DPO on B / rounds pairs of the previous
round's samples, from and referenced to that round's policy), rm_b<B> (a reward model on the
offline run's pairs) and ppo_b<B> (PPO against it). Then the SFT policy and every run's measured
policies answer one fresh draw of held-out prompts (cached in <workdir>/seed<k>/policies.npz;
alignax/analysis/trajectories.py). The analysis: each method's line through its policies, gold at
equal KL and the cross-fitted peak, the paired differences of the criteria of
configs/online_offline.py; a figure per budget and one of peak gold against labels.
"""

from __future__ import annotations

from pathlib import Path

from alignax.analysis import plots
from alignax.analysis.report import table
from alignax.analysis.stats import interval_text, interval_verdict, mean_interval
from alignax.analysis.trajectories import (
    budget_cell,
    measured_policies,
    peaks_and_falls,
    policy_figure,
    policy_results,
    policy_table,
)
from alignax.cli import run_experiment
from alignax.provenance import written_by
from alignax.study import (
    RLHF_STAGES,
    PlannedStage,
    Study,
    check_kl_budgets,
    check_same_labels,
    check_trajectory,
    rlhf_stage_config,
    wall_time_text,
)

DPO = RLHF_STAGES["dpo"].KIND
METHODS = {"offline": "offline DPO", "online": "online DPO", "ppo": "PPO (reward model)"}
# The criteria: {label: (method a, method b)}, each read as a minus b at every budget.
VERSUS = {
    "online_minus_offline": ("online", "offline"),
    "ppo_minus_offline": ("ppo", "offline"),
    "online_minus_ppo": ("online", "ppo"),
}


def method_points(config, budget: int) -> dict[str, dict[str, tuple[str, int]]]:
    """{method: {point: (stage, step)}} at `budget` labels: the offline run and PPO at their
    measured steps, online DPO at each round's end."""
    m, rounds = config.measure, config.online.rounds
    round_steps = config.stages.dpo.train.steps // rounds
    offline, ppo = f"offline_b{budget}", f"ppo_b{budget}"
    online = [f"online_b{budget}_r{r}" for r in range(1, rounds + 1)]
    return {
        "offline": {f"{offline}@{s}": (offline, s) for s in m.dpo_checkpoints},
        "online": {f"{stage}@{round_steps}": (stage, round_steps) for stage in online},
        "ppo": {f"{ppo}@{s}": (ppo, s) for s in m.ppo_checkpoints},
    }


def all_points(config) -> dict[str, tuple[str, int]]:
    return {
        point: where
        for budget in config.budgets
        for points in method_points(config, budget).values()
        for point, where in points.items()
    }


def check(config) -> None:
    """What would otherwise fail after the compute."""
    budgets, rounds = tuple(config.budgets), config.online.rounds
    if not budgets or len(set(budgets)) < len(budgets) or min(budgets) <= 0:
        raise ValueError(f"budgets={budgets}: distinct positive label budgets")
    if rounds < 2:
        raise ValueError(f"online.rounds={rounds}: online DPO needs at least 2 rounds")
    train = config.stages.dpo.train
    if any(b % rounds for b in budgets) or train.steps % rounds:
        raise ValueError(
            f"budgets={budgets} and stages.dpo.train.steps={train.steps} must divide among "
            f"online.rounds={rounds}"
        )
    m = config.measure
    check_kl_budgets(m.kl_budgets, "measure.kl_budgets")
    check_trajectory(m.dpo_checkpoints, "measure.dpo_checkpoints", train, "stages.dpo")
    ppo = config.stages.ppo.train
    check_trajectory(m.ppo_checkpoints, "measure.ppo_checkpoints", ppo, "stages.ppo")
    check_same_labels(config, "the offline run's")


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    check(config)
    stages = [
        PlannedStage(name, RLHF_STAGES[name].KIND, rlhf_stage_config(config, name, seed, seed_dir))
        for name in ("pretrain", "sft")
    ]
    rounds = config.online.rounds
    round_steps = config.stages.dpo.train.steps // rounds
    for budget in config.budgets:
        offline = rlhf_stage_config(config, "dpo", seed, seed_dir)
        with offline.unlocked():
            offline.pairs.num_pairs = budget
        stages.append(PlannedStage(f"offline_b{budget}", DPO, offline, group="dpo"))
        start = seed_dir / "sft"
        for r in range(1, rounds + 1):
            stage = rlhf_stage_config(config, "dpo", seed, seed_dir)
            with stage.unlocked():
                stage.seed = 1000 * seed + r  # fresh prompts and samples every round
                stage.init_from = str(start)
                stage.labels.policy_from = str(start)
                stage.pairs.num_pairs = budget // rounds
                # Each round restarts its optimizer: the template's warmup is shared among
                # them, so that the rounds together warm up as long as the offline run.
                stage.optimizer.warmup_steps = config.stages.dpo.optimizer.warmup_steps // rounds
                stage.train.update(
                    steps=round_steps,
                    log_every=min(stage.train.log_every, round_steps),
                    eval_every=round_steps,
                    checkpoint_every=round_steps,
                    keep_checkpoints=1,
                )
            name = f"online_b{budget}_r{r}"
            stages.append(PlannedStage(name, DPO, stage, group="online"))
            start = seed_dir / name
        reward_model = rlhf_stage_config(config, "reward_model", seed, seed_dir)
        with reward_model.unlocked():
            reward_model.pairs.num_pairs = budget
        kind = RLHF_STAGES["reward_model"].KIND
        stages.append(PlannedStage(f"rm_b{budget}", kind, reward_model, group="rm"))
        ppo = rlhf_stage_config(config, "ppo", seed, seed_dir)
        with ppo.unlocked():
            ppo.rewards.reward_model_from = str(seed_dir / f"rm_b{budget}")
        stages.append(PlannedStage(f"ppo_b{budget}", RLHF_STAGES["ppo"].KIND, ppo, group="ppo"))
    return stages


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """The measured policies' answers (alignax.analysis.trajectories.measured_policies)."""
    return measured_policies(config, seed, seed_dir, all_points(config), measure=config.measure)


def analyse(config, seeds: dict, workdir: Path) -> dict:
    """Per budget: each method's line and its gold at the KL budgets, the paired differences of
    `VERSUS` there and in the cross-fitted peak, and their verdicts; the figures."""
    kl_budgets = list(config.measure.kl_budgets)
    tables = {str(seed): policy_table(m, list(all_points(config))) for seed, m in seeds.items()}
    figures = workdir / "figures"
    out = {}
    for budget in config.budgets:
        lines = {
            f"{method}_b{budget}": list(points)
            for method, points in method_points(config, budget).items()
        }
        pairs = {label: (f"{a}_b{budget}", f"{b}_b{budget}") for label, (a, b) in VERSUS.items()}
        policies = policy_results(tables, lines, kl_budgets, pairs)
        peaks = {str(seed): peaks_and_falls(m, lines) for seed, m in seeds.items()}
        per_method = {
            line: mean_interval([p[line]["peak"] for p in peaks.values()]) for line in lines
        }
        peak_differences = {
            label: mean_interval([p[a]["peak"] - p[b]["peak"] for p in peaks.values()])
            for label, (a, b) in pairs.items()
        }
        out[str(budget)] = {
            "lines": lines,
            "policies": policies,
            "peaks": peaks,
            "peak": per_method,
            "peak_differences": peak_differences,
            "answers": {
                label: {
                    "peak": interval_verdict(d, "higher", "lower"),
                    "at_kl_budgets": policies["answers"][label]["gold"],
                }
                for label, d in peak_differences.items()
            },
        }
        labels = {f"{method}_b{budget}": name for method, name in METHODS.items()}
        title = f"{budget} labels: gold and length against KL ({len(tables)} seeds)"
        path = figures / f"online_offline_b{budget}"
        policy_figure(policies["runs"], lines, labels, kl_budgets, title, path)
    labels_figure(out, config.budgets, figures)
    return {"budgets": list(config.budgets), "kl_budgets": kl_budgets, "by_budget": out}


def labels_figure(by_budget: dict, budgets, out_dir: Path):
    """figures/online_offline_labels.{png,pdf}: each method's cross-fitted peak gold against the
    labels it spent (mean over seeds, 95% t-intervals)."""
    fig, ax = plots.subplots(figsize=(5.2, 3.6))
    for i, (method, name) in enumerate(METHODS.items()):
        values = [by_budget[str(b)]["peak"][f"{method}_b{b}"] for b in budgets]
        plots.intervals(ax, budgets, values, fmt="o-", color=plots.series_color(i), label=name)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="labels spent", ylabel="peak gold (cross-fitted)")
    ax.legend(fontsize=7)
    return plots.save(fig, out_dir / "online_offline_labels")


# ---------------------------------------------------------------------------------------------
# The report.


def report(config, results: dict, timings: dict, prov: dict) -> str:
    s, m, rounds = config.stages, config.measure, config.online.rounds
    first = results["by_budget"][str(results["budgets"][0])]
    seeds = list(first["peaks"])
    lines = [
        "### Online against offline preference learning at matched label budgets",
        "",
        f"{written_by(prov)}; {len(seeds)} seeds ({', '.join(seeds)}) on {config.workers} "
        f"process(es); {wall_time_text(timings)}.",
        "",
        f"Per seed: pretraining ({s.pretrain.train.steps} steps) and SFT ({s.sft.train.steps}); "
        "then at every budget of labels (pairs labelled by the gold reward's Bradley-Terry "
        f"annotator at temperature {s.dpo.labels.annotator_temperature}): offline DPO on that "
        f"many pairs of SFT samples ({s.dpo.train.steps} steps of {s.dpo.train.batch_size} "
        f"pairs, beta {s.dpo.loss.hyperparameters.beta}); online DPO in {rounds} rounds, each "
        f"on its share of fresh pairs of the previous round's samples, "
        f"{s.dpo.train.steps // rounds} steps from that policy, its reference; PPO "
        f"({s.ppo.train.steps} iterations of {s.ppo.train.batch_size} prompts, adaptive KL to "
        f"{s.ppo.ppo.kl_target:g} nats) against a reward model of the offline run's pairs "
        f"({s.reward_model.train.steps} steps). The SFT policy and every run's policy (offline "
        f"and PPO at steps {', '.join(map(str, m.dpo_checkpoints))} and "
        f"{', '.join(map(str, m.ppo_checkpoints))}, online at each round's end) answer one fresh "
        f"draw of {m.num_prompts} held-out prompts with one sampling key. Gold at equal KL reads "
        "each method's line through its policies (seeds that reach the budget in brackets); "
        "the peak (the SFT policy included) is chosen on half of the prompts and read on the "
        "other half, both ways. Mean over seeds ± 95% t-interval; differences paired within "
        "each seed.",
        "",
    ]
    kl_budgets = results["kl_budgets"]
    rows = []
    for budget in results["budgets"]:
        block = results["by_budget"][str(budget)]
        at = block["policies"]["methods"]
        for method, name in METHODS.items():
            line = f"{method}_b{budget}"
            rows.append(
                [
                    budget,
                    name,
                    interval_text(block["peak"][line]),
                    *(budget_cell(v) for v in at[line]["gold"]),
                    *(budget_cell(v) for v in at[line]["length"][-1:]),
                ]
            )
    header = ["labels", "method", "peak gold"]
    header += [f"gold at KL {k:g}" for k in kl_budgets]
    header += [f"length at KL {kl_budgets[-1]:g}"]
    lines += table(header, rows)
    lines += [
        "",
        "The criteria stated before the run (configs/online_offline.py), answered from the "
        "intervals of the paired differences:",
        "",
    ]
    rows = []
    for budget in results["budgets"]:
        block = results["by_budget"][str(budget)]
        for label, (a, b) in VERSUS.items():
            answer = block["answers"][label]
            at = block["policies"]["differences"][label]["gold"]
            rows.append(
                [
                    budget,
                    f"{METHODS[a]} - {METHODS[b]}",
                    f"{interval_text(block['peak_differences'][label], signed=True)} "
                    f"**{answer['peak']}**",
                    *(
                        f"{budget_cell(v)} **{verdict}**"
                        for v, verdict in zip(at, answer["at_kl_budgets"], strict=True)
                    ),
                ]
            )
    header = ["labels", "difference", "peak gold"] + [f"gold at KL {k:g}" for k in kl_budgets]
    lines += table(header, rows)
    lines += [
        "",
        "Where the setting differs from Tang et al.'s and Xu et al.'s: a tiny review-task policy "
        "and a simulated annotator of the task's gold reward instead of language models and a "
        "gold reward model (or human labels); one untuned setting per method; online DPO's "
        "rounds each restart the optimizer from the round's policy, with its share of the "
        "warmup.",
    ]
    return "\n".join(lines) + "\n"


PAPER = "Tang et al. (2024); Xu et al. (2024)"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    out = []
    for budget in results["budgets"]:
        block = results["by_budget"][str(budget)]
        out.append(
            f"{budget} labels, peak gold: "
            + ", ".join(
                f"{METHODS[a]} - {METHODS[b]} "
                f"{interval_text(block['peak_differences'][label], signed=True)} "
                f"(**{block['answers'][label]['peak']}**)"
                for label, (a, b) in VERSUS.items()
            )
        )
    return out


def summarize(results: dict) -> dict:
    return {
        f"answer/b{budget}/{label}/peak": block["answers"][label]["peak"]
        for budget, block in results["by_budget"].items()
        for label in VERSUS
    }


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
