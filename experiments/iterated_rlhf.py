"""Iterated RLHF: does re-collecting comparisons of the current policy's samples, and re-training
the reward model on them, keep PPO from over-optimising a fixed reward model, at equal labels?

    python -m experiments.iterated_rlhf --config configs/iterated_rlhf.py \
        --workdir runs/iterated_rlhf

Stages (each in <workdir>/seed<k>/<stage>, each resumable), for every seed in `config.seeds`:
pretrain -> sft -> reward_model -> ppo_fixed_beta<b> at each KL coefficient of `betas` (the fixed
arm), and for r = 1 .. `rounds`: rm_beta<b>_r<r> (fresh pairs of the current policy's samples,
from the previous round's reward model) -> ppo_iterated_beta<b>_r<r> (PPO from the current
policy against it, the KL penalty to the SFT policy). Then the SFT policy and every PPO policy
at its measured steps answer one fresh draw of held-out prompts (cached in
<workdir>/seed<k>/policies.npz; alignax/analysis/trajectories.py). The analysis: each arm's
trajectory, its peak and fall, cross-fitted over halves of the prompts; the paired differences
of the criteria of configs/iterated_rlhf.py; figures of gold against KL and against the labels
spent.
"""

from __future__ import annotations

from pathlib import Path

from alignax.analysis import plots
from alignax.analysis.report import table
from alignax.analysis.stats import interval_text
from alignax.analysis.trajectories import (
    END_COLUMNS,
    budget_cell,
    end_results,
    end_row,
    end_summary,
    measured_policies,
    peaks_and_falls,
    policy_figure,
    policy_results,
    policy_table,
    sft_end_row,
)
from alignax.cli import run_experiment
from alignax.provenance import written_by
from alignax.study import (
    RLHF_STAGES,
    PlannedStage,
    Study,
    check_fixed_kl_betas,
    check_kl_budgets,
    check_trajectory,
    rlhf_stage_config,
    wall_time_text,
)

ARMS = {"fixed": "fixed reward model", "iterated": "iterated (re-collected) reward models"}


def round_steps(config) -> tuple[int, int]:
    """(reward-model steps, PPO iterations) of one round of the iterated arm."""
    s = config.stages
    return s.reward_model.train.steps // config.rounds, s.ppo.train.steps // config.rounds


def rounds_of(beta: float, rounds: int) -> list[tuple[str, str]]:
    """[(reward-model stage, PPO stage)] of the iterated arm's rounds at KL coefficient `beta`."""
    return [
        (f"rm_beta{beta:g}_r{r}", f"ppo_iterated_beta{beta:g}_r{r}") for r in range(1, rounds + 1)
    ]


def trajectories(config) -> dict[str, dict[str, tuple[str, int]]]:
    """{line: {point: (stage, step)}} in the order of the run: the fixed arm's PPO run at every
    step of `measure.checkpoints`, and the iterated arm's rounds one after another, each at the
    measured steps within its length (the point named by the iteration it is at overall)."""
    steps, (_, per_round) = config.measure.checkpoints, round_steps(config)
    out = {}
    for beta in config.betas:
        fixed = f"ppo_fixed_beta{beta:g}"
        out[f"fixed_beta{beta:g}"] = {f"{fixed}@{s}": (fixed, s) for s in steps}
        iterated = {}
        for r, (_, stage) in enumerate(rounds_of(beta, config.rounds)):
            for s in (s for s in steps if s <= per_round):
                iterated[f"iterated_beta{beta:g}@{r * per_round + s}"] = (stage, s)
        out[f"iterated_beta{beta:g}"] = iterated
    return out


def all_points(config) -> dict[str, tuple[str, int]]:
    return {p: where for line in trajectories(config).values() for p, where in line.items()}


def check(config) -> None:
    """What would otherwise fail after the compute."""
    check_fixed_kl_betas(config)
    s, rounds = config.stages, config.rounds
    if rounds < 2:
        raise ValueError(f"rounds={rounds}: the iterated arm needs at least 2 rounds")
    divided = (s.reward_model.pairs.num_pairs, s.reward_model.train.steps, s.ppo.train.steps)
    if any(n % rounds for n in divided):
        raise ValueError(
            f"stages.reward_model.pairs.num_pairs, stages.reward_model.train.steps and "
            f"stages.ppo.train.steps ({', '.join(map(str, divided))}) must divide among "
            f"rounds={rounds}"
        )
    m = config.measure
    check_kl_budgets(m.kl_budgets, "measure.kl_budgets")
    check_trajectory(m.checkpoints, "measure.checkpoints", s.ppo.train, "stages.ppo")
    per_round = round_steps(config)[1]
    if per_round not in m.checkpoints:
        raise ValueError(
            f"measure.checkpoints={tuple(m.checkpoints)} must hold a round's length, "
            f"{per_round} PPO iterations (each round is measured at its end)"
        )


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    check(config)
    stages = [
        PlannedStage(name, RLHF_STAGES[name].KIND, rlhf_stage_config(config, name, seed, seed_dir))
        for name in ("pretrain", "sft", "reward_model")
    ]
    rm_steps, ppo_steps = round_steps(config)
    sft = seed_dir / "sft"
    for beta in config.betas:
        fixed = rlhf_stage_config(config, "ppo", seed, seed_dir)
        with fixed.unlocked():
            fixed.ppo.kl_coef = beta
        stages.append(PlannedStage(f"ppo_fixed_beta{beta:g}", RLHF_STAGES["ppo"].KIND, fixed))
        policy, reward = sft, None
        for r, (rm_name, ppo_name) in enumerate(rounds_of(beta, config.rounds), start=1):
            rm = rlhf_stage_config(config, "reward_model", seed, seed_dir)
            with rm.unlocked():
                rm.seed = 1000 * seed + r  # fresh prompts and samples every round
                rm.labels.policy_from = str(policy)
                if reward is not None:  # continue the previous round's reward model
                    rm.init_from = str(reward)
                rm.pairs.num_pairs //= config.rounds
                rm.optimizer.warmup_steps //= config.rounds
                rm.train.update(steps=rm_steps, eval_every=rm_steps, checkpoint_every=rm_steps)
            stages.append(PlannedStage(rm_name, RLHF_STAGES["reward_model"].KIND, rm, group="rm"))
            stage = rlhf_stage_config(config, "ppo", seed, seed_dir)
            with stage.unlocked():
                stage.seed = 1000 * seed + r  # fresh training prompts every round
                stage.init_from = str(policy)
                stage.reference_from = str(sft)
                stage.rewards.reward_model_from = str(seed_dir / rm_name)
                stage.ppo.kl_coef = beta
                stage.optimizer.warmup_steps //= config.rounds
                stage.train.update(
                    steps=ppo_steps,
                    eval_every=ppo_steps,
                    log_every=min(stage.train.log_every, ppo_steps),
                )
            stages.append(PlannedStage(ppo_name, RLHF_STAGES["ppo"].KIND, stage, group="ppo"))
            policy, reward = seed_dir / ppo_name, seed_dir / rm_name
    return stages


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """The measured policies' answers (alignax.analysis.trajectories.measured_policies)."""
    return measured_policies(config, seed, seed_dir, all_points(config), measure=config.measure)


def analyse(config, seeds: dict, workdir: Path) -> dict:
    """Per seed: every point's `policy_table` row and each arm's peak and fall; over seeds:
    each arm's line, the iterated arm's paired differences from the fixed one (at the end, the
    peak, the fall and the KL budgets) and the answers to the criteria; the figures."""
    budgets, lines = list(config.measure.kl_budgets), trajectories(config)
    tables = {str(seed): policy_table(m, list(all_points(config))) for seed, m in seeds.items()}
    pairs = {f"beta{b:g}": (f"iterated_beta{b:g}", f"fixed_beta{b:g}") for b in config.betas}
    points = {line: list(p) for line, p in lines.items()}
    policies = policy_results(tables, points, budgets, pairs)
    ends = {str(seed): peaks_and_falls(m, points) for seed, m in seeds.items()}
    versus = end_results(ends, pairs, policies)
    figures = workdir / "figures"
    for beta in config.betas:
        arms = {f"{arm}_beta{beta:g}": name for arm, name in ARMS.items()}
        title = f"Fixed against iterated reward models, beta {beta:g} ({len(tables)} seeds)"
        path = figures / f"iterated_rlhf_beta{beta:g}"
        policy_figure(policies["runs"], {a: points[a] for a in arms}, arms, budgets, title, path)
    spent = labels_spent(config)
    labels_figure(policies["runs"], spent, config.betas, figures)
    return {
        "points": points,
        "labels_spent": spent,
        "budgets": budgets,
        "policies": policies,
        "ends": ends,
        "per_arm": versus["per_line"],
        "iterated_minus_fixed": versus["differences"],
        "answers": versus["answers"],
    }


def labels_spent(config) -> dict[str, list[tuple[str, int]]]:
    """{line: [(point, the labels its reward model had used)]}: the fixed arm at its end (all
    of them), the iterated arm at each round's end (the rounds' so far)."""
    total, (_, per_round) = config.stages.reward_model.pairs.num_pairs, round_steps(config)
    out = {}
    for line, points in trajectories(config).items():
        if line.startswith("fixed"):
            out[line] = [(list(points)[-1], total)]
        else:
            ends = [p for p in points if int(p.rsplit("@", 1)[1]) % per_round == 0]
            out[line] = [(p, total * r // config.rounds) for r, p in enumerate(ends, start=1)]
    return out


def labels_figure(runs: dict, spent: dict, betas, out_dir: Path):
    """figures/iterated_rlhf_labels.{png,pdf}: gold against the labels spent (`labels_spent`):
    the iterated arm at each round's end, a line from the SFT policy at 0 labels, the fixed arm
    (every label spent before PPO starts) at its end alone (mean over seeds, 95% t-intervals)."""
    fig, ax = plots.subplots(figsize=(5.2, 3.6))
    sft = runs["sft"]["gold_reward"]
    plots.intervals(ax, [0], [sft], fmt="D", color="0.3", label="SFT policy")
    for i, beta in enumerate(betas):
        for arm, fmt in (("fixed", "s"), ("iterated", "o-")):
            ends = spent[f"{arm}_beta{beta:g}"]
            start = [(0, sft)] if arm == "iterated" else []
            points = start + [(n, runs[p]["gold_reward"]) for p, n in ends]
            label = f"{ARMS[arm]}, beta {beta:g}"
            xs, ys = [x for x, _ in points], [y for _, y in points]
            plots.intervals(ax, xs, ys, fmt=fmt, color=plots.series_color(i), label=label)
    ax.set(xlabel="labels spent", ylabel="gold (fresh prompts)")
    ax.legend(fontsize=7)
    return plots.save(fig, out_dir / "iterated_rlhf_labels")


# ---------------------------------------------------------------------------------------------
# The report.


def report(config, results: dict, timings: dict, prov: dict) -> str:
    s, rm, rounds = config.stages, config.stages.reward_model, config.rounds
    rm_steps, ppo_steps = round_steps(config)
    runs, per_arm, m = results["policies"]["runs"], results["per_arm"], config.measure
    lines = [
        "### Iterated RLHF: fixed against re-collected reward models at equal labels",
        "",
        f"{written_by(prov)}; {len(results['ends'])} seeds ({', '.join(results['ends'])}) on "
        f"{config.workers} process(es); {wall_time_text(timings)}.",
        "",
        f"Per seed: pretraining ({s.pretrain.train.steps} steps) and SFT ({s.sft.train.steps}); "
        f"labels from the gold annotator with {rm.labels.flip_rate:.0%} of them flipped, for "
        f"reward models of width {rm.model.d_model}. Fixed: one reward model on "
        f"{rm.pairs.num_pairs} pairs of the SFT policy's samples ({rm.train.steps} steps of "
        f"{rm.train.batch_size}), PPO against it for {s.ppo.train.steps} iterations of "
        f"{s.ppo.train.batch_size} prompts. Iterated: {rounds} rounds, each labelling "
        f"{rm.pairs.num_pairs // rounds} fresh pairs of the current policy's samples, "
        f"continuing the previous round's reward model on them for {rm_steps} steps and PPO "
        f"from the current policy for {ppo_steps} iterations, its KL penalty to the SFT policy "
        f"(learning rate {s.ppo.optimizer.learning_rate:g}, a fixed KL coefficient). Each arm's "
        f"policies at iterations {', '.join(map(str, m.checkpoints))} (the iterated arm's at "
        "those within a round) and the SFT policy answer one fresh draw of "
        f"{m.num_prompts} held-out prompts with one sampling key. Peak and fall (peak minus the "
        "end) are cross-fitted: the peak (the SFT policy included) chosen on half of the "
        "prompts is read on the other half, both ways. Mean over seeds ± 95% t-interval; "
        "differences paired within each seed.",
        "",
    ]
    rows = []
    for line, points in results["points"].items():
        arm, beta = line.split("_beta")
        rows.append([ARMS[arm], beta, *end_row(runs[points[-1]], per_arm[line])])
    rows.append(["SFT policy (the start)", "-", *sft_end_row(runs["sft"])])
    header = ["reward model", "beta", *END_COLUMNS]
    lines += table(header, rows)
    budgets = results["budgets"]
    lines += [
        "",
        "Iterated minus fixed at the same beta (paired by seed), and the criteria stated before "
        "the run (configs/iterated_rlhf.py), answered from the intervals; gold at equal KL reads "
        f"each arm's line through its measured policies at {', '.join(f'{b:g}' for b in budgets)} "
        "nats (seeds that reach the budget in brackets):",
        "",
    ]
    rows = []
    for label, versus in results["iterated_minus_fixed"].items():
        answer = results["answers"][label]
        at = results["policies"]["differences"][label]["gold"]
        rows.append(
            [
                label.removeprefix("beta"),
                f"{interval_text(versus['end'], signed=True)} **{answer['end']}**",
                f"{interval_text(versus['fall'], signed=True)} **{answer['fall']}**",
                f"{interval_text(versus['peak'], signed=True)} **{answer['peak']}**",
                *(f"{budget_cell(v)} **{a}**" for v, a in zip(at, answer["at_budgets"])),
            ]
        )
    header = ["beta", "(1) final gold", "(2) fall from the peak", "(3) peak"]
    header += [f"(4) gold at KL {b:g}" for b in budgets]
    lines += table(header, rows)
    lines += [
        "",
        "Where the setting differs from iterated online RLHF (Bai et al. 2022) and the seed's "
        "periodic re-collection: a tiny review-task policy with the task's gold reward as the "
        "annotator (a quarter of its labels flipped) instead of people; small reward models "
        "from scratch, each round continuing the last on the new pairs only (Bai et al. "
        "re-train on all data so far); one untuned PPO setting per beta; four rounds.",
    ]
    return "\n".join(lines) + "\n"


PAPER = "Bai et al. (2022), iterated online RLHF"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    out = []
    for label, versus in results["iterated_minus_fixed"].items():
        answer = results["answers"][label]
        out.append(
            f"PPO at beta {label.removeprefix('beta')}, iterated minus fixed reward model: final "
            f"gold {interval_text(versus['end'], signed=True)} (**{answer['end']}**), fall "
            f"from the peak {interval_text(versus['fall'], signed=True)} (**{answer['fall']}**)"
        )
    return out


def summarize(results: dict) -> dict:
    return end_summary(results["answers"], results["per_arm"])


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
