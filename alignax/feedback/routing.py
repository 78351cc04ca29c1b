"""Targeted human feedback: spend a budget of gold ("human") labels where the AI judge is least
sure (RLTHF, Xu et al. 2025), against the same budget spent on random pairs.

    selected = least_confident(p_N, percent=5)        # indices of the 5% closest to P = 0.5
    chosen_a = merge_labels(hard_labels(p_N), gold_chosen_a, selected)

A budget of `percent` % of N pairs is floor(percent * N / 100) pairs (never more than the
budget). Ties are broken by the lower pair index, so a selection is deterministic.
`conditions` lists a study's (routing, budget) runs and `routed_labels` makes each one's labels.
"""

from __future__ import annotations

import math

import numpy as np

# How a targeted budget picks its pairs: the judge's least confident, or its members' most
# disagreeing (an ensemble judge).
ROUTING = ("confidence", "disagreement")


def budget_count(n: int, percent: float) -> int:
    """floor(percent * n / 100), for percent in [0, 100]."""
    if not 0 <= percent <= 100:
        raise ValueError(f"budget percent={percent} must be in [0, 100]")
    return min(n, math.floor(percent * n / 100 + 1e-9))  # 1e-9: 7 * 100 / 100 is not 6.99..


def _first(priority_N, count: int) -> np.ndarray:
    """Indices of the `count` smallest priorities (ties: lower index first), ascending."""
    priority_N = np.asarray(priority_N, np.float64)
    order = np.lexsort((np.arange(len(priority_N)), priority_N))
    return np.sort(order[:count])


def least_confident(probabilities_N, percent: float) -> np.ndarray:
    """The budget's pairs with the smallest |P - 0.5| (sorted indices)."""
    p = np.asarray(probabilities_N, np.float64)
    return _first(np.abs(p - 0.5), budget_count(len(p), percent))


def most_uncertain(uncertainty_N, percent: float) -> np.ndarray:
    """The budget's pairs with the largest uncertainty, e.g. an ensemble's disagreement."""
    u = np.asarray(uncertainty_N, np.float64)
    return _first(-u, budget_count(len(u), percent))


def random_pairs(n: int, percent: float, rng: np.random.Generator) -> np.ndarray:
    """The random-budget baseline: the same number of pairs, uniformly without replacement."""
    return np.sort(rng.choice(n, size=budget_count(n, percent), replace=False))


def merge_labels(judge_labels_N, gold_labels_N, selected) -> np.ndarray:
    """The judge's labels with the `selected` pairs' labels replaced by gold ones."""
    labels = np.array(judge_labels_N, copy=True)
    labels[np.asarray(selected, int)] = np.asarray(gold_labels_N)[np.asarray(selected, int)]
    return labels


def conditions(r) -> list[tuple[str, float]]:
    """(routing, budget %) of every DPO run: targeted at every budget; random at the budgets
    strictly between 0 and 100 (at 0 and 100 both are the same labels). `r`: a study's routing
    section (`budgets`, `random_baseline`)."""
    out = [("targeted", float(p)) for p in r.budgets]
    if r.random_baseline:
        out += [("random", float(p)) for p in r.budgets if 0 < p < 100]
    return out


def routed_labels(r, labelled: dict, routing: str, percent: float, seed: int):
    """The judge's labels (`labelled`: "judge", "human", "probability", and "uncertainty" for an
    ensemble judge) with the budget's pairs relabelled by the human: at random, or as the
    routing section `r` says (`r.by`: one of ROUTING); (labels, selected)."""
    n = len(labelled["judge"])
    if routing == "random":
        selected = random_pairs(n, percent, np.random.default_rng([seed, 13, int(percent * 100)]))
    elif r.by == "confidence":
        selected = least_confident(labelled["probability"], percent)
    else:
        if "uncertainty" not in labelled:
            raise ValueError(
                "routing.by='disagreement' needs an ensemble judge (judge.kind="
                "'principle_ensemble'); allowed for other judges: 'confidence'"
            )
        selected = most_uncertain(labelled["uncertainty"], percent)
    return merge_labels(labelled["judge"], labelled["human"], selected), selected
