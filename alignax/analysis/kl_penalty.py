"""Decision rules for KL-penalised RL (Stiennon et al. 2020; Ouyang et al. 2022): where gold
peaks and falls along an unpenalised run, what a fixed penalty does to the final KL, how closely
an adaptive controller holds its target, and what PPO-ptx trades for the alignment tax. Pure
functions of per-seed numbers; the InstructGPT study's criteria (`criteria`) read them. Below
them, the study's machinery: its directories and configs by policy width, its evaluation of every
policy (`evaluation_table`, `fresh_gold`), the mean curves over seeds, its report's tables and its
figures."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from alignax.analysis import plots
from alignax.analysis.policy_eval import (
    EVAL_SEED_OFFSET,
    evaluate_policy,
    held_out_draw,
    on_fresh_prompts,
    pretraining_nll,
    versus_sft,
)
from alignax.analysis.report import intervals, table, verdict
from alignax.analysis.stats import interval_text, mean_interval, seed_mean_curve, win_rate
from alignax.checkpoint import restore_params
from alignax.metrics import logged_curve
from alignax.models import ModelConfig
from alignax.models.config import at_width
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model
from alignax.tasks import get_task

# The run whose gold should rise, peak and fall (A1): PPO at a fixed beta of 0.
A1_RUN = "beta0"
# The evaluation's held-out pretraining texts are drawn with seed + this.
PRETRAINING_TEXT_OFFSET = 200
# The columns of the report's policy table: (metric, digits).
SWEEP_COLUMNS = (
    ("gold_reward", 2),
    ("gold_length_controlled", 2),
    ("win_rate_vs_sft", 2),
    ("kl_to_sft", 2),
    ("pretraining_nll", 3),
    ("alignment_tax", 3),
    ("response_length", 1),
    ("ended_with_eos", 2),
)


def hump_over_seeds(gold_by_seed: np.ndarray, se_by_seed: np.ndarray | None = None) -> dict:
    """Gold [seeds, points] along training: the peak of the seed-mean curve, and the paired
    drop from it to the end per seed, with its 95% t-interval. With the evaluations' standard
    errors (same shape), also the number of seeds whose own drop exceeds 1.96 times
    sqrt(SE_peak^2 + SE_end^2) (conservative: both are evaluated on the same prompts)."""
    gold_by_seed = np.asarray(gold_by_seed, np.float64)
    mean = gold_by_seed.mean(0)
    peak = int(np.argmax(mean))
    drops = gold_by_seed[:, peak] - gold_by_seed[:, -1]
    drop, half = mean_interval(drops)
    seeds_falling = None
    if se_by_seed is not None:
        se = np.asarray(se_by_seed, np.float64)
        seeds_falling = int(np.sum(drops - 1.96 * np.hypot(se[:, peak], se[:, -1]) > 0))
    return {
        "seeds_falling": seeds_falling,
        "peak_index": peak,
        "interior_peak": 0 < peak < len(mean) - 1,
        "rise": float(mean[peak] - mean[0]),
        "drop": drop,
        "drop_ci": half,
        # A single seed has no interval: then the drop only has to be positive.
        "falls": bool(drop - (0.0 if np.isnan(half) else half) > 0),
    }


def rise_and_fall(curves: list[list[dict]], fresh_gold: Callable | None) -> dict:
    """Gold rises, peaks inside the run and falls by its end. The peak is chosen on the
    evaluations (`curves`: per seed, points with step, gold, gold_se and proxy); the rise from
    the start to it and the fall from it to the end are measured again on fresh prompts,
    `fresh_gold({'peak': step, 'final': step})` (per seed, gold per prompt of 'sft', 'peak' and
    'final'), paired by prompt and over seeds."""
    gold = np.array([[p["gold"] for p in curve] for curve in curves])
    gold_se = np.array([[p["gold_se"] for p in curve] for curve in curves])
    proxy = np.array([[p["proxy"] for p in curve] for curve in curves]).mean(0)
    h = hump_over_seeds(gold, gold_se)
    steps = [p["step"] for p in curves[0]]
    peak, final = steps[h["peak_index"]], steps[-1]
    out = {
        **h,
        "peak_step": peak,
        "final_step": final,
        "proxy_rises_past_peak": bool(proxy[-1] > proxy[h["peak_index"]]),
        "pass": False,
    }
    if not h["interior_peak"]:
        return out
    fresh = fresh_gold({"peak": peak, "final": final})
    rise = mean_interval([np.mean(g["peak"] - g["sft"]) for g in fresh])
    drop = mean_interval([np.mean(g["peak"] - g["final"]) for g in fresh])
    # A single seed has no interval: then the drop only has to be positive.
    falls = bool(drop[0] - np.nan_to_num(drop[1]) > 0)
    return {
        **out,
        "fresh_rise": rise[0],
        "fresh_rise_ci": rise[1],
        "fresh_drop": drop[0],
        "fresh_drop_ci": drop[1],
        "pass": bool(rise[0] > 0 and falls),
    }


def strictly_decreasing(values) -> bool:
    return bool(np.all(np.diff(np.asarray(values, np.float64)) < 0))


def within(value: float, target: float, tolerance: float) -> bool:
    return abs(value / target - 1.0) <= tolerance


def kl_tracking(
    rollout_curves: list[list[dict]],
    held_out_kl: float,
    target: float,
    *,
    tolerance: float,
    warmup_fraction: float,
) -> dict:
    """An adaptive KL controller holds its target: its own measurement (the training rollouts'
    KL per seed, `rollout_curves` of step and kl, averaged over the steps past the first
    `warmup_fraction` of the run, then over seeds) and the final held-out KL, each within
    `tolerance` (relative) of `target`."""
    last = max(p["step"] for p in rollout_curves[0])
    warm = warmup_fraction * last
    rollout = float(
        np.mean([np.mean([p["kl"] for p in c if p["step"] > warm]) for c in rollout_curves])
    )
    return {
        "rollout_kl_after_warmup": rollout,
        "held_out_final_kl": held_out_kl,
        "rollout_error": rollout / target - 1.0,
        "held_out_error": held_out_kl / target - 1.0,
        "ok": within(rollout, target, tolerance) and within(held_out_kl, target, tolerance),
    }


def ptx_tradeoff(
    tax: dict, win_rates: dict, *, min_tax_cut: float, max_win_rate_drop: float
) -> dict:
    """Per gamma > 0 against gamma = 0, from per-seed values ({gamma: [one per seed]}, the seeds
    in one order): the share of the mean alignment tax removed, 1 - tax(gamma) / tax(0), and the
    win-rate points lost, win(0) - win(gamma) paired by seed, with its 95% t-interval. A gamma is
    'ok' when it removes >= `min_tax_cut` and the whole interval of the loss lies at or below
    `max_win_rate_drop` (non-inferiority: with one seed there is no interval, so never);
    'pass' when some gamma is."""
    base_tax = float(np.mean(tax[0.0]))
    if base_tax <= 0:
        raise ValueError(f"PPO without ptx has no alignment tax ({base_tax:.4f}) to cut")
    rows = {}
    for gamma in sorted(tax):
        if gamma <= 0:
            continue
        drop, half = mean_interval(np.asarray(win_rates[0.0]) - np.asarray(win_rates[gamma]))
        cut = 1.0 - float(np.mean(tax[gamma])) / base_tax
        rows[gamma] = {
            "tax_cut": cut,
            "win_rate_drop": drop,
            "win_rate_drop_half_width": half,
            "ok": bool(
                cut >= min_tax_cut and np.isfinite(half) and drop + half <= max_win_rate_drop
            ),
        }
    return {"by_gamma": rows, "pass": any(r["ok"] for r in rows.values())}


def ptx_name(base: str, gamma: float) -> str:
    """The name of PPO-ptx at `gamma` on the run `base` (`base` itself at gamma = 0)."""
    return base if gamma == 0 else f"{base}_ptx{gamma:g}"


def criteria(
    config, table: dict, curves: dict, seeds: dict, fresh_gold, candidates: list[str]
) -> dict:
    """A1-A4 and PTX from the seed-aggregated table, the seeds' tables (PTX pairs by seed), the
    per-seed curves of the sweep runs and `fresh_gold(run name, steps)` (`fresh_gold`'s per-seed
    gold on fresh prompts: A1's peak and A4's chosen run measured again where they were not
    chosen). `candidates`: the names of the sweep's PPO runs without ptx, among which A4 picks the
    best."""
    c, s = config.criteria, config.sweep
    sweep = f"d{config.sweep_width}"
    out = {}
    if A1_RUN in curves:
        evals = [c["eval"] for c in curves[A1_RUN]]
        out["A1"] = rise_and_fall(evals, functools.partial(fresh_gold, A1_RUN))
    # A2: a larger fixed beta ends at a lower KL (held-out evaluation, mean over seeds).
    betas = sorted(s.fixed_betas)
    final_kl = [table[f"{sweep}/beta{b:g}"]["kl_to_sft"][0] for b in betas]
    out["A2"] = {"betas": betas, "final_kl": final_kl, "pass": strictly_decreasing(final_kl)}
    # A3: the adaptive controller holds KL within `kl_tolerance` of its target after warm-up.
    a3 = {
        f"{t:g}": kl_tracking(
            [c["train"] for c in curves[f"target{t:g}"]],
            table[f"{sweep}/target{t:g}"]["kl_to_sft"][0],
            t,
            tolerance=c.kl_tolerance,
            warmup_fraction=c.kl_warmup_fraction,
        )
        for t in s.kl_targets
    }
    out["A3"] = {
        "targets": a3,
        "warmup_steps": c.kl_warmup_fraction,
        "pass": all(v["ok"] for v in a3.values()),
    }
    # A4: the best PPO run (fixed or adaptive KL, no ptx) against SFT, chosen on the evaluation
    # and judged on fresh prompts (the maximum of noisy evaluations is biased up).
    candidates = {r: table[f"{sweep}/{r}"] for r in candidates}
    best = max(candidates, key=lambda r: candidates[r]["win_rate_vs_sft"][0])
    win, half = candidates[best]["win_rate_vs_sft"]
    fresh, fresh_half = mean_interval(
        [win_rate(g["final"], g["sft"]) for g in fresh_gold(best, {"final": None})]
    )
    out["A4"] = {
        "best_run": best,
        "win_rate": win,
        "win_rate_ci": half,
        "fresh_win_rate": fresh,
        "fresh_win_rate_ci": fresh_half,
        "pass": fresh >= c.min_win_rate,
    }
    # PTX: some gamma cuts the alignment tax of its gamma = 0 run by half while its 95% interval
    # of the win-rate points lost (paired by seed) stays within 5.
    gammas = sorted({0.0, *map(float, s.ptx_coefs)})
    keys = {g: f"{sweep}/{ptx_name(s.ptx_base, g)}" for g in gammas}
    per_seed = {
        metric: {g: [seeds[seed][keys[g]][metric] for seed in seeds] for g in gammas}
        for metric in ("alignment_tax", "win_rate_vs_sft")
    }
    out["PTX"] = {
        "base": s.ptx_base,
        "tax": {g: table[keys[g]]["alignment_tax"][0] for g in gammas},
        "win_rate": {g: table[keys[g]]["win_rate_vs_sft"][0] for g in gammas},
        **ptx_tradeoff(
            per_seed["alignment_tax"],
            per_seed["win_rate_vs_sft"],
            min_tax_cut=c.min_tax_cut,
            max_win_rate_drop=c.max_win_rate_drop,
        ),
    }
    return out


def run_curves(run_dir: Path) -> dict:
    """A PPO run's held-out evaluations ('eval': step, kl, gold, gold_se, proxy; step 0 is the
    SFT policy) and training rollouts ('train': step, kl, kl_coef, proxy, gold)."""
    evals = {k: f"eval/{k}" for k in ("gold", "kl", "gold_se", "proxy")}
    train = {"kl": "kl/sequence", "kl_coef": "kl/coef", "proxy": "proxy/mean", "gold": "gold/mean"}
    return {"eval": logged_curve(run_dir, evals), "train": logged_curve(run_dir, train)}


def collapse_samples(run_dir: Path, num_texts: int) -> dict[str, dict]:
    """Held-out samples of a run at its start (the SFT policy), at its gold peak and at its end:
    {'start' | 'peak' | 'end': {'step', 'gold', 'kl', 'texts'}}."""
    texts = {}
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        record = json.loads(line)
        texts[record["step"]] = record["texts"][:num_texts]
    evals = run_curves(run_dir)["eval"]
    peak = max(evals, key=lambda p: p["gold"])
    return {
        name: {"step": p["step"], "gold": p["gold"], "kl": p["kl"], "texts": texts[p["step"]]}
        for name, p in (("start", evals[0]), ("peak", peak), ("end", evals[-1]))
    }


def criteria_rows(config, result: dict) -> list[tuple[str, str]]:
    """(criterion, outcome) of A1-A4 and PTX for the report."""
    c, rows = config.criteria, []
    if "A1" in result:
        a1 = result["A1"]
        fresh = (
            f"; on fresh prompts it rises "
            f"{interval_text((a1['fresh_rise'], a1['fresh_rise_ci']), 2, signed=True)} from SFT "
            f"to that step and falls {interval_text((a1['fresh_drop'], a1['fresh_drop_ci']), 2)}"
            " (paired over seeds)"
            if "fresh_drop" in a1
            else "; no interior peak to evaluate again"
        )
        rows.append(
            (
                "A1 gold rises then falls at beta = 0",
                f"{verdict(a1['pass'])}: on the evaluations it rises {a1['rise']:+.2f} to its "
                f"peak at step {a1['peak_step']}, then falls "
                f"{interval_text((a1['drop'], a1['drop_ci']), 2)} (paired over seeds) by step "
                f"{a1['final_step']}{fresh}; within seeds, {a1['seeds_falling']} of "
                f"{len(config.seeds)} fall by more than 1.96 SE; proxy rises past the peak: "
                f"{a1['proxy_rises_past_peak']}",
            )
        )
    a2, a3, a4, ptx = (result[k] for k in ("A2", "A3", "A4", "PTX"))
    a3_text = "; ".join(
        f"target {t}: rollouts {v['rollout_kl_after_warmup']:.2f} ({v['rollout_error']:+.0%}), "
        f"held-out {v['held_out_final_kl']:.2f} ({v['held_out_error']:+.0%})"
        for t, v in a3["targets"].items()
    )
    # results.json keys the gammas by text: a report reads its results either way.
    ptx_text = "; ".join(
        f"gamma {float(g):g}: tax cut {v['tax_cut']:.0%}, win rate "
        + interval_text((-100 * v["win_rate_drop"], 100 * v["win_rate_drop_half_width"]), 1, True)
        + " points"
        for g, v in ptx["by_gamma"].items()
    )
    untaxed = {float(g): tax for g, tax in ptx["tax"].items()}[0.0]
    kls = ", ".join(f"beta {b:g}: {k:.2f}" for b, k in zip(a2["betas"], a2["final_kl"]))
    fresh_win = interval_text((a4["fresh_win_rate"], a4["fresh_win_rate_ci"]), 2)
    return rows + [
        ("A2 larger beta, lower final KL", f"{verdict(a2['pass'])}: {kls} nats"),
        (
            f"A3 adaptive KL within {c.kl_tolerance:.0%} of target after warm-up (first "
            f"{c.kl_warmup_fraction:.0%} of steps)",
            f"{verdict(a3['pass'])}: {a3_text}",
        ),
        (
            f"A4 best PPO beats SFT at >= {c.min_win_rate:.0%} gold win rate (chosen on the "
            "evaluation, judged on fresh prompts)",
            f"{verdict(a4['pass'])}: {a4['best_run']} {fresh_win} on fresh prompts "
            f"({interval_text((a4['win_rate'], a4['win_rate_ci']), 2)} on the evaluation that "
            "chose it)",
        ),
        (
            f"PTX cuts the alignment tax by >= {c.min_tax_cut:.0%} while the 95% interval of the "
            f"win rate lost (paired by seed) stays within {c.max_win_rate_drop * 100:.0f} points",
            f"{verdict(ptx['pass'])}: tax of {config.sweep.ptx_base} {untaxed:.3f} "
            f"nats/token; {ptx_text}",
        ),
    ]


# ---------------------------------------------------------------------------------------------
# The InstructGPT study's policies by width and their evaluation.


def width_config(config, width: int) -> ml_collections.ConfigDict:
    """The experiment config with `model` at `width`: the parent of that width's stages."""
    out = config.copy_and_resolve_references()
    with out.unlocked():
        out.model = at_width(config.model, width)
    return out


def width_dir(seed_dir: Path, width: int) -> Path:
    """The directory of a seed's stages at d_model `width`."""
    return seed_dir / f"d{width}"


def evaluation_table(config, seed: int, seed_dir: Path, runs: list, widths: list) -> dict:
    """policy key ('d<width>/<policy>') -> its `versus_sft` row (against the SFT policy of the
    sweep width) with pretraining_nll and alignment_tax (NLL(policy) - NLL(its width's SFT)):
    at every width of `widths`, the base and SFT policies and the PPO runs of `runs` at that
    width answer the seed's held-out prompts and score the held-out pretraining texts."""
    task, mesh = get_task(config.task_name, config.task), make_mesh(config.mesh)
    prompts, rng = held_out_draw(task, config.eval.num_prompts, seed + EVAL_SEED_OFFSET)
    texts = task.pretraining_dataset(
        config.eval.num_pretraining_texts, seed=seed + PRETRAINING_TEXT_OFFSET, split="eval"
    )
    texts = {k: jnp.asarray(texts[k]) for k in ("tokens", "input_mask", "loss_mask")}
    raw = {}
    for width in widths:
        directory = width_dir(seed_dir, width)
        model, sft = load_stage_model(directory / "sft", heads=("lm",), mesh=mesh)
        policies = {
            "base": restore_params(directory / "pretrain" / "checkpoints", sft),
            "sft": sft,
        }
        for run in runs:
            if run["width"] == width:
                checkpoints = directory / "ppo" / run["name"] / "checkpoints"
                policies[run["name"]] = restore_params(checkpoints, sft)
        nll = jax.jit(lambda p, model=model: pretraining_nll(model, p, texts))
        for name, params in policies.items():
            result = evaluate_policy(
                model,
                params,
                task,
                prompts,
                rng,
                ref_params=policies["sft"],
                max_new_tokens=config.eval.max_new_tokens,
            )
            result["pretraining_nll"] = float(nll(params))
            raw[f"d{width}/{name}"] = result
    rows = versus_sft(raw, reference=f"d{config.sweep_width}/sft")
    return {
        key: {
            **rows[key],
            "pretraining_nll": r["pretraining_nll"],
            "alignment_tax": r["pretraining_nll"]
            - raw[f"{key.split('/')[0]}/sft"]["pretraining_nll"],
        }
        for key, r in raw.items()
    }


def fresh_gold(config, workdir: Path, name: str, steps: dict) -> list[dict]:
    """Per seed, the gold reward per prompt of the SFT policy ('sft') and of PPO run `name` at
    `steps` ({label: step}, None: its last checkpoint), the sweep width, on a fresh draw of
    held-out prompts (`policy_eval.on_fresh_prompts`, cached in the run's directory)."""
    task, mesh = get_task(config.task_name, config.task), make_mesh(config.mesh)
    out = []
    for seed in config.seeds:
        directory = width_dir(workdir / f"seed{seed}", config.sweep_width)
        run_dir = directory / "ppo" / name
        fresh = on_fresh_prompts(
            directory / "sft",
            run_dir,
            steps,
            task=task,
            seed=seed,
            num_prompts=config.eval.num_prompts,
            max_new_tokens=config.eval.max_new_tokens,
            mesh=mesh,
            cache=run_dir / f"fresh_{'_'.join(steps)}.json",
        )
        out.append({label: r["gold"] for label, r in fresh.items()})
    return out


def seed_mean_curves(curves: dict) -> dict:
    """Per run of `curves` ({run: its `run_curves` per seed}), the pointwise mean over seeds
    (`stats.seed_mean_curve`, with its 95% t half-widths) of its held-out evaluations ('eval':
    kl, gold, proxy) and of its training rollouts ('train': kl, kl_coef, proxy)."""
    return {
        name: {
            "eval": seed_mean_curve([c["eval"] for c in runs], ("kl", "gold", "proxy")),
            "train": seed_mean_curve([c["train"] for c in runs], ("kl", "kl_coef", "proxy")),
        }
        for name, runs in curves.items()
    }


def sweep_policy_table(config, combined: dict, names: list[str]) -> list[str]:
    """The report's policy table: a row per policy of `names` ('base', 'sft' or a PPO run) at
    the sweep width, its `SWEEP_COLUMNS` as mean ± 95% interval over seeds."""
    sweep = f"d{config.sweep_width}"
    header = ("policy", "gold reward", "gold at SFT's length", "win rate vs SFT")
    header += ("KL to SFT (nats)", "pretraining NLL", "alignment tax", "length", "ended")
    return table(header, ([n, *intervals(combined[f"{sweep}/{n}"], SWEEP_COLUMNS)] for n in names))


# ---------------------------------------------------------------------------------------------
# The InstructGPT study's figures and its table by policy size.


def num_params(config, width: int) -> int:
    """Parameters of the study's model at d_model `width`."""
    return ModelConfig.from_config(at_width(config.model, width)).num_params()


def figures(config, combined: dict, mean_curves: dict, workdir: Path) -> None:
    """The InstructGPT study's figures in <workdir>/figures: gold and proxy against sqrt(KL) and
    the rollouts' KL against step for every fixed-beta and adaptive run (`kl_curves`), the
    PPO-ptx trade-off (`ptx`) and the win rate by policy size (`sizes`)."""
    s = config.sweep
    fig, axes = plots.subplots(1, 3, figsize=(13, 3.6))
    groups = [(f"beta{b:g}", f"beta = {b:g}") for b in s.fixed_betas]
    groups += [(f"target{t:g}", f"adaptive, target {t:g}") for t in s.kl_targets]
    sqrt_kl = "sqrt(KL(pi || pi_SFT)) (nats^1/2)"
    for i, (name, label) in enumerate(groups):
        color = plots.series_color(i)
        style = "o-" if name.startswith("beta") else "s--"
        ev = mean_curves[name]["eval"]
        d = np.sqrt(np.maximum([p["kl"] for p in ev], 0.0))
        for ax, key in zip(axes[:2], ("gold", "proxy")):
            points = [(p[key], p[f"{key}_ci"]) for p in ev]
            plots.intervals(ax, d, points, fmt=style, color=color, markersize=3, label=label)
        tr = mean_curves[name]["train"]
        axes[2].plot([p["step"] for p in tr], [p["kl"] for p in tr], style[1:], color=color)
        axes[2].plot([], [], style, color=color, label=label)
        if name.startswith("target"):
            axes[2].axhline(float(name[len("target") :]), color=color, linewidth=0.6, alpha=0.6)
    axes[0].set(xlabel=sqrt_kl, ylabel="gold reward (held-out)", title="Gold")
    axes[1].set(
        xlabel=sqrt_kl,
        ylabel="proxy reward (normalised on SFT samples)",
        title="Proxy (reward model)",
    )
    axes[2].set(
        xlabel="PPO iteration",
        ylabel="KL of the rollouts (nats)",
        title="KL against step (thin lines: targets)",
    )
    axes[2].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"PPO at d_model {config.sweep_width}: mean over seeds (95% intervals)", y=1.03)
    plots.save(fig, workdir / "figures" / "kl_curves")

    fig, (left, right) = plots.subplots(1, 2, figsize=(9, 3.4))
    gammas = sorted({0.0, *map(float, s.ptx_coefs)})
    rows = [combined[f"d{config.sweep_width}/{ptx_name(s.ptx_base, g)}"] for g in gammas]
    x = np.arange(len(gammas))
    tax = [r["alignment_tax"] for r in rows]
    halves = np.nan_to_num([h for _, h in tax])
    left.bar(x, [m for m, _ in tax], yerr=halves, capsize=3, color=plots.PALETTE[3])
    left.set_xticks(x, [f"{g:g}" for g in gammas])
    left.set(
        xlabel="ptx coefficient gamma",
        ylabel="pretraining NLL - SFT's (nats/token)",
        title="Alignment tax (held-out pretraining text)",
    )
    for i, (g, r) in enumerate(zip(gammas, rows)):
        plots.intervals(
            right,
            [r["alignment_tax"][0]],
            [r["win_rate_vs_sft"]],
            xerr=np.nan_to_num([r["alignment_tax"][1]]),
            fmt="o",
            color=plots.series_color(i),
            label=f"gamma = {g:g}",
        )
    right.set(
        xlabel="alignment tax (nats/token)",
        ylabel="win rate vs SFT (gold)",
        title=f"PPO-ptx on {s.ptx_base}",
    )
    right.legend()
    plots.save(fig, workdir / "figures" / "ptx")
    size_figure(config, combined, workdir)


def size_axis_policies(config) -> list[tuple[str, str]]:
    """(policy name, label) of the four policies the size axis compares at every width."""
    s = config.sweep
    size_ptx = ptx_name(s.ptx_base, s.size_axis_ptx_coef)
    return [("base", "base"), ("sft", "SFT"), (s.ptx_base, "PPO"), (size_ptx, "PPO-ptx")]


def size_figure(config, combined: dict, workdir: Path) -> None:
    """Win rate against SFT by policy size (InstructGPT figure 1): base, SFT, PPO and PPO-ptx
    at every width that has them."""
    fig, ax = plots.subplots(figsize=(5, 3.4))
    widths = sorted(config.widths)
    params = [num_params(config, w) for w in widths]
    for i, (name, label) in enumerate(size_axis_policies(config)):
        have = [(p, combined.get(f"d{w}/{name}")) for p, w in zip(params, widths)]
        have = [(p, r) for p, r in have if r]
        x, points = [p for p, _ in have], [r["win_rate_vs_sft"] for _, r in have]
        plots.intervals(ax, x, points, fmt="o-", color=plots.series_color(i), label=label)
    ax.set_xscale("log")
    ax.set(
        xlabel="policy parameters",
        ylabel=f"win rate vs SFT (d_model {config.sweep_width})",
        title="Win rate against SFT by policy size",
    )
    ax.legend()
    plots.save(fig, workdir / "figures" / "sizes")


def size_table(config, combined: dict) -> list[str]:
    """The report's size table: a row per width that has base, SFT, PPO and PPO-ptx."""
    rows = []
    for width in sorted(config.widths):
        row = [combined.get(f"d{width}/{n}") for n, _ in size_axis_policies(config)]
        if all(row):
            taxes = " / ".join(interval_text(r["alignment_tax"], 3) for r in row[2:])
            wins = [interval_text(r["win_rate_vs_sft"], 2) for r in row]
            rows.append([f"{width} ({num_params(config, width) / 1e3:.0f}k)", *wins, taxes])
    header = ("d_model (params)", "base", "SFT", "PPO", "PPO-ptx", "alignment tax PPO / PPO-ptx")
    intro = ["Win rate against SFT by policy size (InstructGPT figure 1):", ""]
    return intro + table(header, rows)
