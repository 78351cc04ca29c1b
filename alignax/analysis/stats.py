"""Intervals for the numbers the experiments report."""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the Student-t `confidence` interval) over independent runs (seeds);
    half-width nan for a single run."""
    values = np.asarray(values, np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan")
    sem = values.std(ddof=1) / np.sqrt(len(values))
    return mean, float(sem * stats.t.ppf(0.5 + confidence / 2, len(values) - 1))


def spearman(a, b) -> float:
    return float(stats.spearmanr(a, b).statistic)
