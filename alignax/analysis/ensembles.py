"""Reward-model ensembles for best-of-n (Coste et al. 2023): the members' scores combined by
their mean, their minimum (worst-case optimisation, WCO) or their mean less a multiple of their
variance (uncertainty-weighted optimisation, UWO), each member standardised over the pool first.

From one pool of N samples per problem, for each n: the accuracy of each combination's pick
(the unbiased best-of-n estimate, alignax.analysis.best_of_n), of a single member's (the mean
over members) and of the oracle (pass@n); the peak over n, cross-fitted (the n is chosen on one
half of the problems and read on the other, both ways), and the loss from it to the largest n.
Across seeds: mean and 95% t-interval of each, and of the paired differences against a single
member that the criteria read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignax.analysis import plots
from alignax.analysis.best_of_n import best_of_n_per_prompt
from alignax.analysis.pass_at_k import pass_at_k
from alignax.analysis.stats import cross_fitted_peak, mean_interval

COMBINATIONS = {"mean": "mean", "wco": "worst case (WCO)", "uwo": "uncertainty-weighted (UWO)"}
SELECTORS = {"oracle": "oracle (pass@n)", "single": "single member", **COMBINATIONS}


def standardised_logits(probabilities_KxPxN: np.ndarray) -> np.ndarray:
    """Each member's logits of its probabilities, standardised over the whole pool (all problems
    and samples), so that members of different scales weigh alike."""
    p = np.clip(np.asarray(probabilities_KxPxN, np.float64), 1e-7, 1 - 1e-7)
    z = np.log(p) - np.log1p(-p)
    axes = tuple(range(1, z.ndim))
    return (z - z.mean(axis=axes, keepdims=True)) / z.std(axis=axes, keepdims=True)


def combine(z_KxPxN: np.ndarray, how: str, uwo_penalty: float) -> np.ndarray:
    """[P, N] the members' standardised scores combined `how`: mean | wco | uwo."""
    if how == "mean":
        return z_KxPxN.mean(axis=0)
    if how == "wco":
        return z_KxPxN.min(axis=0)
    if how == "uwo":
        return z_KxPxN.mean(axis=0) - uwo_penalty * z_KxPxN.var(axis=0)
    raise ValueError(f"unknown combination {how!r}; known: {', '.join(COMBINATIONS)}")


def seed_table(
    correct_PxN: np.ndarray, probabilities_KxPxN: np.ndarray, ns: list[int], uwo_penalty: float
) -> dict:
    """One seed: each selector's best-of-n accuracy {"n": accuracy} (mean over problems), its
    cross-fitted peak over n and its loss from the peak to the largest n."""
    correct = np.asarray(correct_PxN, np.float64)
    pool = correct.shape[1]
    oracle = np.stack([pass_at_k(correct.sum(1).astype(int), pool, n) for n in ns], axis=1)

    def picks(scores_PxN) -> np.ndarray:  # [P, len(ns)]
        return np.stack([best_of_n_per_prompt(scores_PxN, correct, n)[1] for n in ns], axis=1)

    z = standardised_logits(probabilities_KxPxN)
    per_problem = {
        "oracle": oracle,
        "single": np.mean([picks(member) for member in z], axis=0),
        **{how: picks(combine(z, how, uwo_penalty)) for how in COMBINATIONS},
    }
    table = {}
    for name, values in per_problem.items():
        curve = values.mean(axis=0)
        peak = cross_fitted_peak(values)
        table[name] = {
            "accuracy": {str(n): float(a) for n, a in zip(ns, curve, strict=True)},
            "peak": peak,
            "loss_from_peak": peak - float(curve[-1]),
        }
    return table


def aggregate(tables: dict, ns: list[int]) -> dict:
    """Across seeds (mean, 95% t-interval half-width): each selector's accuracy at each n, peak
    and loss from the peak; each combination's paired differences from a single member in
    accuracy at each n, in peak and in loss from the peak."""
    seeds = list(tables.values())
    out = {}
    for name in SELECTORS:
        out[name] = {
            "accuracy": {
                str(n): mean_interval([t[name]["accuracy"][str(n)] for t in seeds]) for n in ns
            },
            **{k: mean_interval([t[name][k] for t in seeds]) for k in ("peak", "loss_from_peak")},
        }
    out["versus_single"] = {
        how: {
            "accuracy": {
                str(n): mean_interval(
                    [t[how]["accuracy"][str(n)] - t["single"]["accuracy"][str(n)] for t in seeds]
                )
                for n in ns
            },
            **{
                k: mean_interval([t[how][k] - t["single"][k] for t in seeds])
                for k in ("peak", "loss_from_peak")
            },
        }
        for how in COMBINATIONS
    }
    return out


def figure(combined: dict, ns: list[int], num_seeds: int, directory: Path) -> None:
    """Best-of-n accuracy against n for every selector, and each combination's paired
    difference from a single member, mean ± 95% CI over seeds, as PNG and PDF in `directory`."""
    fig, (left, right) = plots.subplots(1, 2, figsize=(10, 3.6))
    for i, (name, label) in enumerate(SELECTORS.items()):
        oracle = name == "oracle"
        plots.intervals(
            left,
            ns,
            [combined[name]["accuracy"][str(n)] for n in ns],
            fmt="--" if oracle else "o-",
            color="black" if oracle else plots.series_color(i - 1),
            markersize=4,
            label=label,
        )
    for i, (how, label) in enumerate(COMBINATIONS.items()):
        plots.intervals(
            right,
            ns,
            [combined["versus_single"][how]["accuracy"][str(n)] for n in ns],
            fmt="o-",
            color=plots.series_color(i + 1),
            markersize=4,
            label=f"{label} - single member",
        )
    right.axhline(0.0, color="black", linewidth=0.8)
    for ax, ylabel in ((left, "accuracy of the pick"), (right, "difference in accuracy")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set(xlabel="n (samples per problem; KL = log n - (n-1)/n)", ylabel=ylabel)
        ax.legend(fontsize=7)
    left.set_title(f"best-of-n with reward-model ensembles ({num_seeds} seeds)")
    right.set_title("paired differences, mean ± 95% CI")
    plots.save(fig, directory / "best_of_n")
