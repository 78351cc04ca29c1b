"""Reward-model over-optimisation: gold vs proxy reward as the policy moves away from its start
(Gao, Schulman & Hilton 2022, "Scaling laws for reward model overoptimization").

    python -m experiments.overoptimization --config configs/overoptimization.py \
        --workdir runs/overopt

On the Study runner (alignax/study.py), every step cached in the workdir so a rerun resumes:
  1. pretrain -> SFT (`policy_stages`): the initial policy (the sft stage).
  2. comparisons: pairs of SFT samples to training prompts, labelled by a Bradley-Terry annotator
     of the gold reward; the noisy condition flips a share of the same labels.
  3. proxies: Bradley-Terry reward models of several sizes and data sizes, clean and noisy,
     several seeds; all models of one size train as one vmapped compiled run (alignax/proxies.py).
  4. pool: `pool_size` SFT samples for each of `num_prompts` held-out prompts, scored by gold and
     every proxy; best-of-n for n = 1 .. pool size with the unbiased estimator, bootstrap SEs
     over prompts, and the oracle (gold-selected) curve. Rewards are standardised on the pool
     (alignax/analysis/overoptimization.py).
  5. RL: PPO at beta = 0 against several proxies, plus one run with a KL penalty; `rl.seeds`
     runs of each (run s against the proxy of seed s), evaluated on held-out prompts from the
     measured start (step 0, the same prompts and sampling key as every later evaluation), on
     `train.eval_steps` early and every `train.eval_every` after; averaged at each step.
  6. analysis: the fits R_bon(d) = d (alpha - beta d) and R_rl(d) = d (alpha - beta log d) with
     d = sqrt(KL) (RL: also per seed, with the two forms' paired difference), the criteria
     B1-B5, figures (PNG + PDF) and results.md / results.json.
"""

from __future__ import annotations

import time
from pathlib import Path

from alignax.analysis.overoptimization import (
    best_of_n_curves,
    best_of_n_seed_coefficients,
    criteria,
    figures,
    hump,
    rl_average,
    rl_curve,
)
from alignax.analysis.report import intervals, table, verdict
from alignax.analysis.stats import interval_text
from alignax.cli import run_experiment
from alignax.parallel import run_jobs
from alignax.provenance import written_by
from alignax.proxies import (
    build_comparisons,
    build_pool,
    comparisons_key,
    pool_key,
    proxy_grid,
    score_pool,
    train_proxies,
)
from alignax.rl import describe_reward
from alignax.sharding import make_mesh
from alignax.stages import stage_config
from alignax.study import PlannedStage, Study, run_planned, wall_time_text
from alignax.tasks import get_task
from alignax.workdir import accumulate_timings, cache_digest, check_config_unchanged
from alignax.workflows import ppo, sft

# ---------------------------------------------------------------------------------------------
# The plan, and the work.


def check_plan(config) -> None:
    """What would otherwise fail after the compute: the RL runs' proxies must be in the grid,
    with a proxy seed for every RL seed."""
    names = [g["name"] for g in proxy_grid(config.proxies)]
    unknown = [name for name in config.rl.proxies if name not in names]
    if unknown:
        raise ValueError(
            f"config rl.proxies names {unknown}, which the proxy grid does not train; "
            f"it trains {names}"
        )
    if config.rl.seeds > config.proxies.seeds:
        raise ValueError(
            f"config rl.seeds={config.rl.seeds} needs as many proxy seeds "
            f"(proxies.seeds={config.proxies.seeds})"
        )


def policy_stages(config, workdir: Path) -> list[PlannedStage]:
    """The stages that make the initial policy (`policy_stages`), each from the one before."""
    stages = []
    for i, name in enumerate(config.policy_stages):
        links = {"init_from": workdir / config.policy_stages[i - 1]} if i else {}
        stage = stage_config(config, config.stages[name], links)
        stages.append(PlannedStage(name, sft.KIND, stage, group="policy"))
    return stages


def rl_stages(config, workdir: Path) -> dict[str, list[PlannedStage]]:
    """PPO at beta = 0 against each of `rl.proxies` (and at `rl.penalty_kl_coef` against the
    first), `rl.seeds` runs each: run s starts from PPO seed `seed + s` and trains against the
    proxy of seed s, so the seeds vary the policy's sampling and the reward model alike.
    {"<proxy>, beta <b>": its runs}."""
    sft_dir = workdir / config.policy_stages[-1]
    plan = [(name, 0.0) for name in config.rl.proxies]
    if config.rl.penalty_kl_coef > 0:
        plan.append((config.rl.proxies[0], config.rl.penalty_kl_coef))
    runs = {}
    for name, kl_coef in plan:
        runs[f"{name}, beta {kl_coef:g}"] = stages = []
        for seed in range(config.rl.seeds):
            proxy = workdir / "proxies" / f"{name}_s{seed}"
            links = {"init_from": sft_dir, "rewards.reward_model_from": proxy}
            ppo_config = stage_config(config, config.rl.ppo, links)
            with ppo_config.unlocked():
                ppo_config.ppo.kl_coef = kl_coef
                ppo_config.seed = config.seed + seed
            name_in_workdir = f"rl/{name}_beta{kl_coef:g}/seed{seed}"
            options = {"evaluate_at_start": True}  # the curve's start is measured
            stages.append(PlannedStage(name_in_workdir, ppo.KIND, ppo_config, options))
    return runs


def prepare(config, workdir: Path) -> dict:
    """The plan (the policy stages, the RL runs), checked before anything runs."""
    check_plan(config)
    plan = {"policy": policy_stages(config, workdir), "rl": rl_stages(config, workdir)}
    for stage in plan["policy"] + [s for runs in plan["rl"].values() for s in runs]:
        check_config_unchanged(stage.config, workdir / stage.name)
    return plan


def measure(config, workdir: Path, plan: dict) -> tuple[dict, dict]:
    """The initial policy, the comparisons and proxies, best-of-n on the pool, the RL runs
    (on `config.workers` processes); each phase's seconds go to the workdir's ledger."""
    task, mesh = get_task(config.task_name, config.task), make_mesh(config.mesh)
    for stage in plan["policy"]:
        run_planned(stage, workdir, workdir, "policy")
    sft_dir = workdir / config.policy_stages[-1]
    mark = time.perf_counter()
    made_from = comparisons_key(config, sft_dir)
    comparisons = build_comparisons(config, task, mesh, sft_dir, workdir, made_from)
    proxy_dirs = train_proxies(config, comparisons, cache_digest(made_from), workdir)
    mark = phase(workdir, "proxies", mark)
    made_from = pool_key(config, sft_dir)
    pool = build_pool(config, task, sft_dir, workdir, made_from)
    scores = score_pool(config, pool, cache_digest(made_from), proxy_dirs)
    kwargs = dict(num_bootstrap=config.pool.num_bootstrap, seed=config.seed)
    curves, oracle = best_of_n_curves(pool, scores, **kwargs)
    mark = phase(workdir, "best_of_n", mark)
    jobs = [(stage, workdir, None, "RL") for runs in plan["rl"].values() for stage in runs]
    run_jobs(run_planned, jobs, workers=config.workers)
    gold_mean, gold_std = float(pool["gold"].mean()), float(pool["gold"].std())
    rl_seeds = {
        key: [rl_curve(workdir / stage.name, gold_mean, gold_std) for stage in runs]
        for key, runs in plan["rl"].items()
    }
    phase(workdir, "rl", mark)
    return {"best_of_n": curves, "oracle": oracle, "rl_seeds": rl_seeds}, {}


def phase(workdir: Path, name: str, mark: float) -> float:
    """Adds the seconds since `mark` to the ledger under seconds/<name>; returns now."""
    now = time.perf_counter()
    accumulate_timings(workdir, {f"seconds/{name}": now - mark})
    return now


# ---------------------------------------------------------------------------------------------
# The report.


def report(config, results: dict, timings: dict, prov: dict) -> str:
    curves, oracle, rl = results["best_of_n"], results["oracle"], results["rl"]
    result, p = results["criteria"], config.proxies
    lines = [
        "### Reward-model over-optimisation (Gao et al. 2022)",
        "",
        f"{written_by(prov)}; {wall_time_text(timings)}.",
        "",
        f"Pool: {config.pool.num_prompts} held-out prompts x {config.pool.pool_size} SFT samples; "
        f"proxies trained on pairs of SFT samples to training prompts ({p.seeds} seeds each), "
        f"every one {p.steps} steps of {p.batch_size} pairs whatever its data size (equal steps: "
        f"{p.steps * p.batch_size / min(p.data_sizes):.3g} epochs of the smallest set, "
        f"{p.steps * p.batch_size / max(p.data_sizes):.2g} of the largest). "
        "Gold and proxy are standardised on the pool (the SFT policy's samples), so n = 1 is 0. "
        "Intervals are 95% (1.96 SE; SE over prompts by bootstrap and over seeds). Peak - final "
        "is cross-fitted: each half of the prompts picks the peak n that the other half's drop "
        "is measured from, paired (the peak of the same data would be biased up). alpha and "
        "beta: R_bon fitted to each seed's curve, mean ± 95% t-interval over seeds (Gao et al.'s "
        "Figs. 3-4: figures/coefficients).",
        "",
    ]
    fits, coefficients = result["B2"]["fits"], results["coefficients"]
    rows = []
    for name, curve in curves.items():
        h = hump(curve)
        last = curve[-1]
        rows.append(
            [
                name,
                curve[h["peak_index"]]["n"],
                f"{h['peak_gold']:.2f}",
                f"{last['gold']:.2f} ± {1.96 * last['gold_se']:.2f}",
                f"{last['drop_from_peak']:.2f} ± {1.96 * last['drop_from_peak_se']:.2f}",
                f"{last['proxy']:.2f}",
                f"{fits[name]['r2']:.3f}",
                *intervals(coefficients[name], [("alpha", 2), ("beta", 2)]),
            ]
        )
    oracle_peak, oracle_last = max(r["gold"] for r in oracle), oracle[-1]
    oracle_cells = [oracle_last["n"], f"{oracle_peak:.2f}", f"{oracle_last['gold']:.2f}"]
    rows.append(["oracle (gold-selected)", *oracle_cells, *["-"] * 5])
    header = ["proxy (d, pairs, flip)", "peak n", "peak gold", "gold at n = max"]
    header += ["peak - final (cross-fitted)", "proxy at n = max", "R_bon R^2", "alpha", "beta"]
    lines += table(header, rows)
    lines += [
        "",
        describe_reward(config.rl.ppo.ppo)
        + " Each run's start (KL 0) is measured on the same held-out prompts and sampling key as "
        "its later evaluations. Final KL: mean over seeds ± 95% t-interval; gold: ± 1.96 SE over "
        "prompts and seeds. R^2 of each form fitted to each seed's curve: mean ± 95% "
        "t-interval over seeds, and the paired difference (R_rl better where it is above 0).",
        "",
    ]
    rows = []
    for name, points in rl.items():
        b = result["B5"][name]
        start, peak, seed_fits = points[0], points[b["hump"]["peak_index"]], b["per_seed"]
        rows.append(
            [
                f"PPO vs {name}",
                f"{start['gold']:.2f} ± {1.96 * start['gold_se']:.2f}",
                f"{peak['gold']:.2f} ± {1.96 * peak['gold_se']:.2f} ({peak['kl']:.1f})",
                interval_text((b["final_kl"], b["final_kl_half_width"]), 1),
                f"{b['final_gold']:.2f} ± {1.96 * b['final_gold_se']:.2f}",
                *intervals(
                    seed_fits, [("r2_rl_form", 3), ("r2_bon_form", 3), ("r2_rl_minus_bon", 3)]
                ),
            ]
        )
    header = [f"RL run (mean of {config.rl.seeds} seeds)", "start gold", "peak gold (at KL)"]
    header += ["final KL", "final gold", "R^2 R_rl", "R^2 R_bon", "R_rl - R_bon"]
    lines += table(header, rows)
    b1, b2, b3, b4 = (result[k] for k in ("B1", "B2", "B3", "B4"))
    b4_text = "; ".join(f"{k}: {v['error_in_se']:+.1f} SE" for k, v in b4.items())
    b3_text = "; ".join(
        f"{k}: size {v['spearman_size']:.2f}, data {v['spearman_data']:.2f}"
        for k, v in b3.items()
        if k != "pass"
    )
    penalty = result["B5"].get("kl_penalty")
    criteria = [
        (
            f"B1 noisy proxies of {len(p.sizes)} sizes peak inside and end >= 3 SE (cross-fitted) "
            "below the peak while the proxy rises; oracle monotone and above",
            f"{verdict(b1['pass'])}: {b1['count']} "
            f"({', '.join(b1['noisy_size_sweep_turned_over']) or 'none'}); oracle monotone "
            f"{b1['oracle_monotone']}, above every proxy {b1['oracle_above_every_proxy']}; single "
            f"reward models (prompt SE only): {b1['single_models_turned_over']} turn over",
        ),
        (
            "B2 R_bon fits every hump with R^2 >= 0.95",
            f"{verdict(b2['pass'])}: {len(b2['humps_with_r2_ge_0.95'])} of {len(b2['humps'])} "
            "humps; gold falls faster than quadratic for "
            f"{', '.join(b2['steeper_than_quadratic']) or 'none'}",
        ),
        (
            "B3 peak gold rises with RM size and data (Spearman >= 0.8)",
            f"{verdict(b3['pass'])}: {b3_text}",
        ),
        (
            f"B4 extrapolation from n <= 256 to n = {config.pool.pool_size} (predicted - measured)",
            b4_text or "n/a",
        ),
    ]
    if penalty:
        criteria.append(
            (
                "B5 KL penalty = early stopping?",
                f"{penalty['run']} ends at sqrt(KL) {penalty['final_sqrt_kl']:.2f} with gold "
                f"{penalty['final_gold']:.2f}; the beta = 0 run had "
                f"{penalty['beta0_gold_at_same_kl']:.2f} there "
                f"({penalty['difference_in_se']:+.1f} SE)",
            )
        )
    lines += ["", *table(("criterion", "outcome"), criteria)]
    return "\n".join(lines) + "\n"


def analyse(config, measured: dict, workdir: Path) -> dict:
    curves, oracle = measured["best_of_n"], measured["oracle"]
    rl = {name: rl_average(runs) for name, runs in measured["rl_seeds"].items()}
    coefficients = {name: best_of_n_seed_coefficients(curve) for name, curve in curves.items()}
    results = {
        **measured,
        "rl": rl,
        "coefficients": coefficients,
        "criteria": criteria(config.proxies, curves, oracle, rl, measured["rl_seeds"]),
    }
    figures(config, results, workdir)
    return results


PAPER = "Gao et al. (2022), Figs. 1-4"


def glance(results: dict) -> list[str]:
    """The verdicts of the README's table at a glance (experiments.publish)."""
    c = results["criteria"]
    b2, penalty = c["B2"], c["B5"].get("kl_penalty")
    worst = max((abs(v["error_in_se"]) for v in c["B4"].values()), default=float("nan"))
    verdicts = [
        f"B1 turn-over of noisy proxies {verdict(c['B1']['pass'])} ({c['B1']['count']})",
        f"B2 R_bon fits the humps {verdict(b2['pass'])} "
        f"({len(b2['humps_with_r2_ge_0.95'])} of {len(b2['humps'])})",
        f"B3 peak gold ordered by RM size and data {verdict(c['B3']['pass'])}",
        f"B4 extrapolation to the largest n within {worst:.1f} SE",
    ]
    if penalty:
        verdicts.append(
            f"B5 KL penalty ends {penalty['difference_in_se']:+.1f} SE from early stopping"
        )
    return verdicts


def summarize(results: dict) -> dict:
    return {f"{k}_pass": results["criteria"][k]["pass"] for k in ("B1", "B2", "B3")}


run = Study.of(__name__).run


if __name__ == "__main__":
    run_experiment(run)
