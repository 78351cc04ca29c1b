"""Intervals for the numbers the experiments report."""

from __future__ import annotations

import numpy as np
from scipy import stats


def standard_error(values) -> float:
    """Standard error of the mean of independent values (sample standard deviation / sqrt n)."""
    values = np.asarray(values, np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values)))


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the Student-t `confidence` interval) over independent runs (seeds);
    half-width nan for a single run."""
    values = np.asarray(values, np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan")
    sem = standard_error(values)
    return mean, float(sem * stats.t.ppf(0.5 + confidence / 2, len(values) - 1))


def seed_means(tables: dict) -> dict:
    """{row: {metric: (mean, 95% t half-width)}} of the seeds' tables ({seed: {row: {metric:
    value}}}), each row over the seeds that have it, rows in the order they first appear.

    >>> seed_means({0: {"sft": {"gold": 1.0}}, 1: {"sft": {"gold": 3.0}, "ppo": {"gold": 2.0}}})
    {'sft': {'gold': (2.0, 12.706204736174694)}, 'ppo': {'gold': (2.0, nan)}}
    """
    rows = dict.fromkeys(row for table in tables.values() for row in table)
    out = {}
    for row in rows:
        have = [table[row] for table in tables.values() if row in table]
        out[row] = {metric: mean_interval([h[metric] for h in have]) for metric in have[0]}
    return out


def seed_mean_curve(curves: list[list[dict]], keys: tuple[str, ...]) -> list[dict]:
    """Pointwise mean and 95% t half-width (`<key>_ci`) over seeds of curves logged at the same
    steps; a step missing from some seed is dropped."""
    steps = sorted(set.intersection(*({p["step"] for p in c} for c in curves)))
    by_step = [{p["step"]: p for p in c} for c in curves]
    out = []
    for step in steps:
        row = {"step": step}
        for key in keys:
            row[key], row[f"{key}_ci"] = mean_interval([c[step][key] for c in by_step])
        out.append(row)
    return out


def interval_text(mean_half: tuple[float, float], digits: int = 3, signed: bool = False) -> str:
    """'mean ± half' for a table (`mean_interval`'s output); 'mean ± undefined' when the
    half-width is undefined (a single seed).

    >>> interval_text((1.0, 0.25), digits=2), interval_text((1.0, float("nan")), digits=2)
    ('1.00 ± 0.25', '1.00 ± undefined')
    """
    mean, half = mean_half
    shown = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return f"{shown} ± {half:.{digits}f}" if np.isfinite(half) else f"{shown} ± undefined"


def spearman(a, b) -> float:
    return float(stats.spearmanr(a, b).statistic)


def win_rate(values, baseline) -> float:
    """How often `values` beat `baseline` (paired, e.g. gold of two policies' responses to the
    same prompts), ties counting half."""
    values, baseline = np.asarray(values), np.asarray(baseline)
    return float(np.mean((values > baseline) + 0.5 * (values == baseline)))


def interval_verdict(interval: tuple[float, float], above: str, below: str) -> str:
    """`above` when the 95% interval lies above 0, `below` when below, else that none is
    resolved."""
    mean, half = interval
    if mean - half > 0:
        return above
    if mean + half < 0:
        return below
    return "no difference resolved"


def cross_fitted_peak(per_problem_PxK: np.ndarray) -> float:
    """The peak over the columns (best-of-n's n, a run's checkpoints) of the mean over the rows
    (problems, prompts), with the column chosen on the even rows and read on the odd ones and
    the other way round, averaged: the chosen column's value on rows it was not chosen on (the
    peak of the same rows would be biased up)."""
    halves = per_problem_PxK[0::2], per_problem_PxK[1::2]
    picks = [int(np.argmax(h.mean(axis=0))) for h in halves]
    return float(np.mean([halves[1 - i][:, k].mean() for i, k in enumerate(picks)]))


def least_squares_slope(values, covariate) -> float:
    """The least-squares slope of `values` on `covariate` (any equal shapes, flattened; 0 when
    the covariate is constant)."""
    y, x = np.ravel(values).astype(np.float64), np.ravel(covariate).astype(np.float64)
    x = x - x.mean()
    return float(x @ (y - y.mean()) / max(x @ x, 1e-12))
