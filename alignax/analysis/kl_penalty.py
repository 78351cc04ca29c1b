"""Decision rules for KL-penalised RL (Stiennon et al. 2020; Ouyang et al. 2022): where gold
peaks and falls along an unpenalised run, what a fixed penalty does to the final KL, how closely
an adaptive controller holds its target, and what PPO-ptx trades for the alignment tax. Pure
functions of per-seed numbers; the InstructGPT study reads its criteria from them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from alignax.analysis.stats import mean_interval


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
