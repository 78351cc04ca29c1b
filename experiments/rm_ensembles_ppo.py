"""Reward-model ensembles against over-optimisation in PPO: does WCO or UWO stop gold's fall?

    python -m experiments.rm_ensembles_ppo --config configs/rm_ensembles_ppo.py \
        --workdir runs/ensembles_ppo

Stages (each in <workdir>/seed<k>/<stage>, each resumable), for every seed in `config.seeds`:
pretrain -> sft -> reward_model (one model) and reward_ensemble (`ensemble.size` members on the
same pairs) -> PPO against each reward of `rewards` at each KL coefficient of `betas`
(stage ppo_<reward>_beta<b>). Then the SFT policy and every PPO run's policy at the steps of
`measure.checkpoints` answer one fresh draw of held-out prompts (cached in
<workdir>/seed<k>/policies.npz; alignax/analysis/trajectories.py). The analysis: every run's
gold, KL, length and diversity along its trajectory; its peak and fall from it, cross-fitted
over halves of the prompts; each combination's paired differences from the single model, at
the end, at the peak and at equal KL; the criteria of configs/rm_ensembles_ppo.py; figures.

Coste et al. (2023, "Reward model ensembles help mitigate overoptimization") find that WCO and
UWO ensembles remove or reduce the fall of gold reward in best-of-n and PPO.
"""

from __future__ import annotations

from pathlib import Path

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

ENSEMBLE = "reward_ensemble"
# {reward: (its reward-model stage, how PPO combines the members: rewards.ensemble_method)}.
REWARDS = {
    "single": ("reward_model", None),
    "mean": (ENSEMBLE, "mean"),
    "wco": (ENSEMBLE, "min"),
    "uwo": (ENSEMBLE, "mean_minus_var"),
}
NAMES = {
    "single": "single model",
    "mean": "ensemble mean",
    "wco": "worst case (WCO)",
    "uwo": "uncertainty-weighted (UWO)",
}
COMBINATIONS = ("mean", "wco", "uwo")


def ppo_runs(config) -> dict[str, tuple[str, float]]:
    """{stage: (reward, KL coefficient)}: every reward of `rewards` at every `betas`."""
    rewards = config.rewards
    return {f"ppo_{r}_beta{beta:g}": (r, beta) for beta in config.betas for r in rewards}


def points(config) -> dict[str, tuple[str, int]]:
    """{point: (stage, step)}: every PPO run at every step of `measure.checkpoints`."""
    steps = config.measure.checkpoints
    return {f"{stage}@{step}": (stage, step) for stage in ppo_runs(config) for step in steps}


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    if config.ensemble.size < 2:
        raise ValueError(f"ensemble.size={config.ensemble.size}: an ensemble needs 2 members")
    rewards = tuple(config.rewards)
    if "single" not in rewards or len(rewards) < 2 or not set(rewards) <= set(REWARDS):
        raise ValueError(
            f"rewards={rewards}: 'single' (what the others are compared with) and at least one "
            f"of {tuple(COMBINATIONS)}"
        )
    check_fixed_kl_betas(config)
    m = config.measure
    check_kl_budgets(m.kl_budgets, "measure.kl_budgets")
    check_trajectory(m.checkpoints, "measure.checkpoints", config.stages.ppo.train, "stages.ppo")
    stages = [
        PlannedStage(name, RLHF_STAGES[name].KIND, rlhf_stage_config(config, name, seed, seed_dir))
        for name in ("pretrain", "sft", "reward_model")
    ]
    ensemble = rlhf_stage_config(config, "reward_model", seed, seed_dir)
    with ensemble.unlocked():
        ensemble.reward.ensemble_size = config.ensemble.size
    stages.append(PlannedStage(ENSEMBLE, RLHF_STAGES["reward_model"].KIND, ensemble))
    for name, (reward, beta) in ppo_runs(config).items():
        stage = rlhf_stage_config(config, "ppo", seed, seed_dir)
        reward_stage, method = REWARDS[reward]
        with stage.unlocked():
            stage.ppo.kl_coef = beta
            stage.rewards.reward_model_from = str(seed_dir / reward_stage)
            if method:
                stage.rewards.update(
                    ensemble_size=config.ensemble.size,
                    ensemble_method=method,
                    uncertainty_penalty=config.ensemble.uwo_penalty,
                )
        stages.append(PlannedStage(name, RLHF_STAGES["ppo"].KIND, stage, group="ppo"))
    return stages


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """The measured policies' answers (alignax.analysis.trajectories.measured_policies)."""
    return measured_policies(config, seed, seed_dir, points(config), measure=config.measure)


def analyse(config, seeds: dict, workdir: Path) -> dict:
    """Per seed: every point's `policy_table` row and every run's peak and fall; over seeds:
    each run's line, each combination's paired differences from the single model (at the end,
    the peak, the fall and the KL budgets) and the answers to the criteria; the figures."""
    runs, budgets = ppo_runs(config), list(config.measure.kl_budgets)
    trajectory = {
        stage: [f"{stage}@{step}" for step in config.measure.checkpoints] for stage in runs
    }
    tables = {str(seed): policy_table(m, list(points(config))) for seed, m in seeds.items()}
    pairs = {
        f"{how}_beta{beta:g}": (f"ppo_{how}_beta{beta:g}", f"ppo_single_beta{beta:g}")
        for beta in config.betas
        for how in COMBINATIONS
        if how in config.rewards
    }
    policies = policy_results(tables, trajectory, budgets, pairs)
    ends = {str(seed): peaks_and_falls(m, trajectory) for seed, m in seeds.items()}
    versus = end_results(ends, pairs, policies)
    figures = workdir / "figures"
    for beta in config.betas:
        lines = {
            f"ppo_{r}_beta{beta:g}": trajectory[f"ppo_{r}_beta{beta:g}"] for r in config.rewards
        }
        labels = {f"ppo_{r}_beta{beta:g}": NAMES[r] for r in config.rewards}
        title = f"PPO against a reward model or an ensemble, beta {beta:g} ({len(tables)} seeds)"
        path = figures / f"rm_ensembles_ppo_beta{beta:g}"
        policy_figure(policies["runs"], lines, labels, budgets, title, path)
    return {
        "runs": {stage: {"reward": r, "beta": b} for stage, (r, b) in runs.items()},
        "budgets": budgets,
        "policies": policies,
        "ends": ends,
        "per_run": versus["per_line"],
        "versus_single": versus["differences"],
        "answers": versus["answers"],
    }


# ---------------------------------------------------------------------------------------------
# The report.


def report(config, results: dict, timings: dict, prov: dict) -> str:
    s, rm, e = config.stages, config.stages.reward_model, config.ensemble
    runs, per_run, policies = results["runs"], results["per_run"], results["policies"]["runs"]
    m, final = config.measure, config.measure.checkpoints[-1]
    lines = [
        "### Reward-model ensembles against over-optimisation in PPO",
        "",
        f"{written_by(prov)}; {len(results['ends'])} seeds ({', '.join(results['ends'])}) on "
        f"{config.workers} process(es); {wall_time_text(timings)}.",
        "",
        f"Per seed: pretraining ({s.pretrain.train.steps} steps) and SFT ({s.sft.train.steps}); "
        f"a reward model of width {rm.model.d_model} on {rm.pairs.num_pairs} pairs of the SFT "
        f"policy's samples labelled by the gold annotator with {rm.labels.flip_rate:.0%} of the "
        f"labels flipped ({rm.train.steps} steps of {rm.train.batch_size}), and an ensemble of "
        f"{e.size} such models trained together on the same pairs, each from its own "
        f"initialisation. PPO ({s.ppo.train.steps} iterations of {s.ppo.train.batch_size} "
        f"prompts, learning rate {s.ppo.optimizer.learning_rate:g}, a fixed KL coefficient) "
        "against the single model, and against the ensemble's members, each standardised on "
        "the SFT policy's samples, combined by their mean, minimum (WCO) or mean less "
        f"{e.uwo_penalty} times their variance (UWO). Every run's policy at steps "
        f"{', '.join(map(str, m.checkpoints))} and the SFT policy answer one fresh draw of "
        f"{m.num_prompts} held-out prompts with one sampling key. Peak and fall (peak minus "
        "the end) are cross-fitted: the peak checkpoint (the SFT policy included) chosen on "
        "half of the prompts is read on the other half, both ways. Mean over seeds ± 95% "
        "t-interval; differences paired within each seed.",
        "",
    ]
    rows = [
        [
            NAMES[run["reward"]],
            f"{run['beta']:g}",
            *end_row(policies[f"{stage}@{final}"], per_run[stage]),
        ]
        for stage, run in runs.items()
    ]
    rows.append(["SFT policy (the start)", "-", *sft_end_row(policies["sft"])])
    header = ["reward", "beta", *END_COLUMNS]
    lines += table(header, rows)
    budgets = results["budgets"]
    lines += [
        "",
        "Each combination minus the single model at the same beta (paired by seed), and the "
        "criteria stated before the run (configs/rm_ensembles_ppo.py), answered from the "
        "intervals; gold at equal KL reads each run's line through its measured policies "
        f"at {', '.join(f'{b:g}' for b in budgets)} nats (seeds that reach the budget in "
        "brackets):",
        "",
    ]
    rows = []
    for label, versus in results["versus_single"].items():
        how, beta = label.split("_beta")
        answer = results["answers"][label]
        at = results["policies"]["differences"][label]["gold"]
        rows.append(
            [
                NAMES[how],
                beta,
                f"{interval_text(versus['end'], signed=True)} **{answer['end']}**",
                f"{interval_text(versus['fall'], signed=True)} **{answer['fall']}**",
                f"{interval_text(versus['peak'], signed=True)} **{answer['peak']}**",
                *(f"{budget_cell(v)} **{a}**" for v, a in zip(at, answer["at_budgets"])),
            ]
        )
    header = ["combination", "beta", "(1) final gold", "(2) fall from the peak", "(3) peak"]
    header += [f"(4) gold at KL {b:g}" for b in budgets]
    lines += table(header, rows)
    lines += [
        "",
        "Where the setting differs from Coste et al.'s: a tiny review-task policy with the "
        "task's gold reward instead of a language model with a gold reward model; small "
        "reward models trained from scratch on noisy labels of the SFT policy's samples "
        "(theirs: fine-tuned language models on clean labels of a larger one's); one PPO "
        "setting per beta, not tuned.",
    ]
    return "\n".join(lines) + "\n"


PAPER = "Coste et al. (2023)"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    out = []
    for label in ("wco_beta0", "uwo_beta0"):
        if label not in results["versus_single"]:  # a run without that combination or beta
            continue
        how = label.removesuffix("_beta0")
        versus, answer = results["versus_single"][label], results["answers"][label]
        out.append(
            f"PPO at beta 0, {NAMES[how]} minus a single model: final gold "
            f"{interval_text(versus['end'], signed=True)} (**{answer['end']}**), fall from "
            f"the peak {interval_text(versus['fall'], signed=True)} (**{answer['fall']}**)"
        )
    return out


def summarize(results: dict) -> dict:
    return end_summary(results["answers"], results["per_run"])


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
