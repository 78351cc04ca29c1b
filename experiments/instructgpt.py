"""InstructGPT / Stiennon et al. curves on the built-in task: PPO's reward and KL under fixed and
adaptive KL penalties, PPO-ptx and the alignment tax, and win rates over policy sizes.

    python -m experiments.instructgpt --config configs/instructgpt.py --workdir runs/instructgpt

For every seed in `config.seeds` (each stage in <workdir>/seed<k>/..., cached, so a rerun
resumes), built on the RLHF stage graph (alignax.study.RLHF_STAGES):
  1. pretrain -> SFT for every policy width in `config.widths` (d<width>/pretrain, d<width>/sft).
  2. reward_model: one per seed, on pairs of samples of the SFT policy of width
     `config.sweep_width` (InstructGPT trains one reward model for all policy sizes).
  3. PPO at the sweep width (d<width>/ppo/<run>): fixed beta in `sweep.fixed_betas`, adaptive
     targets in `sweep.kl_targets`, and PPO-ptx with gamma in `sweep.ptx_coefs` on the run
     `sweep.ptx_base` (gamma = 0 is that run itself). At the other widths (seeds
     `size_axis_seeds`): `sweep.ptx_base` and its PPO-ptx with gamma `sweep.size_axis_ptx_coef`.
  4. evaluation (cached in seed<k>/evaluation.json): every policy (base, SFT, each PPO run)
     answers `eval.num_prompts` held-out prompts; gold reward, win rate against the SFT policy of
     the sweep width (gold decides, ties count half), KL to its own SFT policy, length, and the
     held-out pretraining NLL per token (`eval.num_pretraining_texts` texts of the task's
     pretraining distribution, split "eval"): the alignment tax is NLL(policy) - NLL(SFT).
Then: the criteria A1-A4 and PTX from these numbers, figures/ (PNG + PDF), results.md with the
tables, the criteria, samples of the beta = 0 run at its start, gold peak and end, and the
provenance; results.json with every number; timings.json with the wall time by stage.
"""

from __future__ import annotations

import functools
from pathlib import Path

import ml_collections

from alignax.analysis.kl_penalty import (
    A1_RUN,
    collapse_samples,
    criteria,
    criteria_rows,
    evaluation_table,
    figures,
    fresh_gold,
    ptx_name,
    run_curves,
    seed_mean_curves,
    size_table,
    sweep_policy_table,
    width_config,
    width_dir,
)
from alignax.analysis.report import table, verdict
from alignax.analysis.stats import interval_text, seed_means
from alignax.cli import run_experiment
from alignax.provenance import written_by
from alignax.rl import describe_reward
from alignax.study import (
    RLHF_STAGES,
    PlannedStage,
    Study,
    rlhf_stage_config,
    wall_time_text,
)
from alignax.workdir import cached_json, stage_fingerprint
from alignax.workflows import ppo

# ---------------------------------------------------------------------------------------------
# The plan: which models and PPO runs.


def ppo_plan(config) -> list[dict]:
    """Every PPO run: name, width, group, and the `ppo.*` values it sets. The sweep runs at
    `sweep_width`; the size axis repeats `ptx_base` and its PPO-ptx at the other widths."""
    s = config.sweep
    base = {"kl_control": "fixed", "ptx_coef": 0.0}
    runs = [
        dict(name=f"beta{b:g}", group="fixed", ppo={**base, "kl_coef": float(b)})
        for b in s.fixed_betas
    ]
    runs += [
        dict(
            name=f"target{t:g}",
            group="adaptive",
            ppo={**base, "kl_control": "adaptive", "kl_target": float(t)},
        )
        for t in s.kl_targets
    ]
    by_name = {r["name"]: r for r in runs}
    if s.ptx_base not in by_name:
        raise ValueError(f"sweep.ptx_base={s.ptx_base!r} is not one of {sorted(by_name)}")
    ptx_base = by_name[s.ptx_base]
    if s.size_axis_ptx_coef not in s.ptx_coefs:
        raise ValueError(
            f"sweep.size_axis_ptx_coef={s.size_axis_ptx_coef} must be one of sweep.ptx_coefs="
            f"{tuple(s.ptx_coefs)}: the size axis takes its d{config.sweep_width} run from the "
            "sweep"
        )
    for gamma in s.ptx_coefs:
        if gamma > 0:
            runs.append(
                dict(
                    name=ptx_name(s.ptx_base, gamma),
                    group="ptx",
                    ppo={**ptx_base["ppo"], "ptx_coef": float(gamma)},
                )
            )
    runs = [dict(r, width=config.sweep_width) for r in runs]
    size_ptx = dict(
        name=ptx_name(s.ptx_base, s.size_axis_ptx_coef),
        group="ptx",
        ppo={**ptx_base["ppo"], "ptx_coef": float(s.size_axis_ptx_coef)},
    )
    for width in config.widths:
        if width != config.sweep_width:
            runs += [dict(ptx_base, width=width), dict(size_ptx, width=width)]
    return runs


def ppo_stage(config, run: dict, seed: int, seed_dir: Path) -> ml_collections.ConfigDict:
    """The pipeline's PPO stage for `run`: from that width's SFT policy, against the seed's
    reward model (trained at the sweep width)."""
    cfg = rlhf_stage_config(
        width_config(config, run["width"]), "ppo", seed, width_dir(seed_dir, run["width"])
    )
    with cfg.unlocked():
        cfg.rewards.reward_model_from = str(
            width_dir(seed_dir, config.sweep_width) / "reward_model"
        )
        cfg.ppo.update(run["ppo"])
        if run["name"] == A1_RUN:
            # Every evaluated step is kept, to evaluate A1's peak again on fresh prompts.
            train = cfg.train
            train.update(
                checkpoint_every=train.eval_every,
                keep_checkpoints=train.steps // train.eval_every + 1,
            )
    return cfg


def plan(config, seed: int, seed_dir: Path) -> list[PlannedStage]:
    """Every stage of one seed: pretrain and SFT at each width of the seed (the sweep width
    only, for a seed outside `size_axis_seeds`), the reward model at the sweep width, then the
    PPO runs at those widths (each evaluated at step 0 too)."""
    widths = seed_widths(config, seed)
    planned = []
    for width in widths:
        parent, directory = width_config(config, width), width_dir(seed_dir, width)
        names = ("pretrain", "sft") + ("reward_model",) * (width == config.sweep_width)
        planned += [
            PlannedStage(
                f"d{width}/{name}",
                RLHF_STAGES[name].KIND,
                rlhf_stage_config(parent, name, seed, directory),
                group=name,
            )
            for name in names
        ]
    return planned + [
        PlannedStage(
            f"d{run['width']}/ppo/{run['name']}",
            ppo.KIND,
            ppo_stage(config, run, seed, seed_dir),
            {"evaluate_at_start": True},
            group="ppo",
        )
        for run in seed_runs(config, seed)
    ]


def seed_widths(config, seed: int) -> list[int]:
    """The widths a seed trains: the sweep width first, and the others on the size-axis seeds."""
    if seed not in config.size_axis_seeds:
        return [config.sweep_width]
    return [config.sweep_width] + [w for w in config.widths if w != config.sweep_width]


def seed_runs(config, seed: int) -> list[dict]:
    """The PPO runs of a seed."""
    return [r for r in ppo_plan(config) if r["width"] in seed_widths(config, seed)]


# ---------------------------------------------------------------------------------------------
# Evaluation.


def evaluate_seed(config, seed: int, seed_dir: Path) -> dict:
    """policy key ('d<width>/<policy>') -> its `versus_sft` row (against the sweep width's SFT
    policy) with pretraining_nll and alignment_tax; cached per seed for exactly these stages at
    exactly these checkpoints and configs."""
    runs = seed_runs(config, seed)
    widths = sorted({r["width"] for r in runs} | {config.sweep_width})
    stages = [width_dir(seed_dir, w) / n for w in widths for n in ("pretrain", "sft")]
    stages += [width_dir(seed_dir, r["width"]) / "ppo" / r["name"] for r in runs]
    fingerprints = {str(d.relative_to(seed_dir)): stage_fingerprint(d) for d in stages}
    key = {"stages": fingerprints, "eval": config.eval.to_dict()}
    measure = functools.partial(evaluation_table, config, seed, seed_dir, runs, widths)
    return cached_json(seed_dir / "evaluation.json", key, measure)


def _names(config, groups: tuple[str, ...]) -> list[str]:
    return [
        r["name"]
        for r in ppo_plan(config)
        if r["width"] == config.sweep_width and r["group"] in groups
    ]


# ---------------------------------------------------------------------------------------------
# Samples, figures and the report.


def report(config, results: dict, timings: dict, prov: dict) -> str:
    s = config.sweep
    combined, result, samples = results["combined"], results["criteria"], results["samples"]
    seeds = ", ".join(map(str, config.seeds))
    ppo_stage = config.stages.ppo
    lines = [
        "### InstructGPT / Stiennon et al.: KL-penalised PPO, PPO-ptx and policy size",
        "",
        f"{written_by(prov)}; {len(config.seeds)} seed{'s' if len(config.seeds) > 1 else ''} "
        f"({seeds}) on {config.workers} process(es); {wall_time_text(timings)}.",
        "",
        f"Trimmed from the full design to fit the budget: the beta / target / ptx sweeps run at "
        f"one policy size (d_model {config.sweep_width}); the size axis "
        f"({', '.join(f'd{w}' for w in config.widths)}) runs PPO ({s.ptx_base}) and PPO-ptx "
        f"(gamma {s.size_axis_ptx_coef:g}) only, over seeds "
        f"{', '.join(map(str, config.size_axis_seeds))}; each PPO run is "
        f"{ppo_stage.train.steps} iterations of {ppo_stage.train.batch_size} prompts; one reward "
        f"model per seed (d_model {config.stages.reward_model.model.d_model}) serves every "
        "policy size.",
        "",
        f"Every policy answers {config.eval.num_prompts} held-out prompts; the gold reward "
        f"judges; win rate against the SFT policy of d_model {config.sweep_width} (ties half); "
        "KL to the policy's own SFT start; alignment tax = per-token NLL of "
        f"{config.eval.num_pretraining_texts} held-out pretraining texts minus the SFT "
        "policy's; gold at SFT's length: mean gold adjusted to that SFT policy's mean length "
        "(one gold-on-length slope pooled within policies); ended: the share of responses that "
        "end with EOS rather than at the length cap. "
        + describe_reward(config.stages.ppo.ppo)
        + " Mean over seeds ± 95% t-interval.",
        "",
    ]
    order = ["base", "sft"] + _names(config, ("fixed", "adaptive", "ptx"))
    lines += sweep_policy_table(config, combined, order)
    lines += ["", *size_table(config, combined)]
    lines += ["", *table(("criterion", "outcome"), criteria_rows(config, result))]
    if samples:
        lines += [
            "",
            "Samples of the beta = 0 run (seed "
            f"{config.seeds[0]}, held-out prompts) at its start, its gold peak and its end:",
            "",
        ]
        for name, point in samples.items():
            lines.append(
                f"- **{name}** (step {point['step']}, gold {point['gold']:.2f}, KL "
                f"{point['kl']:.1f}):"
            )
            lines += [f"  - {text}" for text in point["texts"]]
    return "\n".join(lines) + "\n"


def analyse(config, seeds: dict, workdir: Path) -> dict:
    """Every seed's table and their means, the criteria, the PPO runs' curves (per seed and
    their mean), the samples of the beta = 0 run; the figures."""
    curves = {}
    for seed in config.seeds:
        for run in seed_runs(config, seed):
            if run["width"] == config.sweep_width:
                directory = width_dir(workdir / f"seed{seed}", run["width"]) / "ppo" / run["name"]
                curves.setdefault(run["name"], []).append(run_curves(directory))
    combined = seed_means(seeds)
    mean_curves = seed_mean_curves(curves)
    beta0 = width_dir(workdir / f"seed{config.seeds[0]}", config.sweep_width) / "ppo" / A1_RUN
    figures(config, combined, mean_curves, workdir)
    return {
        "seeds": {str(k): v for k, v in seeds.items()},
        "combined": combined,
        "criteria": criteria(
            config,
            combined,
            curves,
            seeds,
            functools.partial(fresh_gold, config, workdir),
            _names(config, ("fixed", "adaptive")),
        ),
        "curves": curves,
        "mean_curves": mean_curves,
        "samples": collapse_samples(beta0, config.eval.num_samples) if beta0.is_dir() else {},
    }


PAPER = "Ouyang et al. (2022), Stiennon et al. (2020)"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    c = results["criteria"]
    a1, a4 = c["A1"], c["A4"]
    fresh_win = interval_text((a4["fresh_win_rate"], a4["fresh_win_rate_ci"]), 2)
    return [
        f"A1 gold falls after its peak at beta 0 {verdict(a1['pass'])} "
        f"({interval_text((a1['drop'], a1['drop_ci']), 2)})",
        f"A2 larger beta, lower KL {verdict(c['A2']['pass'])}",
        f"A3 adaptive KL on target {verdict(c['A3']['pass'])}",
        f"A4 best PPO beats SFT {verdict(a4['pass'])} (win rate {fresh_win}, fresh prompts)",
        f"PTX halves the alignment tax at no win rate {verdict(c['PTX']['pass'])}",
    ]


def summarize(results: dict) -> dict:
    return {f"{k}_pass": v["pass"] for k, v in results["criteria"].items()}


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
