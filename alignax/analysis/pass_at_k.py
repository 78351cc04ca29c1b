"""pass@k: the chance that at least one of k samples solves a problem, estimated without bias from
n >= k samples of which c are correct (Chen et al. 2021, "Evaluating large language models
trained on code", section 2.1).

    per_problem = pass_at_k(num_correct_P, num_samples=64, k=16)   # [P]
    curve = mean_pass_at_k(num_correct_P, 64, ks=(1, 2, 4, 8, 16))   # {k: mean over problems}
    guess = guessing_pass_at_k(answer_probability_P, ks=(1, 16))     # a problem-blind guesser

The estimator is the probability that a k-subset drawn without replacement from the n samples
holds a correct one:

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i),

computed as the product (binomials of n = 64 overflow nothing here, but C(200, 100) ~ 1e59 would
lose every digit in a float ratio). It is 1 when n - c < k (every k-subset holds a correct one).
The naive 1 - (1 - c/n)^k is biased low (it samples with replacement).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def pass_at_k(num_correct, num_samples: int, k: int) -> np.ndarray:
    """Unbiased pass@k per problem, float64 of `num_correct`'s shape.

    Args:
      num_correct: c per problem (integers in [0, num_samples]), any shape.
      num_samples: n, the samples drawn per problem.
      k: the budget, 1 <= k <= n.
    """
    c = np.asarray(num_correct)
    n = int(num_samples)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, num_samples={n}]")
    if c.size and (not np.issubdtype(c.dtype, np.integer) or c.min() < 0 or c.max() > n):
        raise ValueError(f"num_correct must be integers in [0, num_samples={n}], got {c!r}")
    i = np.arange(1, n + 1, dtype=np.float64)  # [n]
    # Term i enters the product iff n - c < i <= n; the others are 1.
    in_product = i > (n - c)[..., None]
    factors = np.where(in_product, 1.0 - k / i, 1.0)
    out = 1.0 - np.prod(factors, axis=-1)
    return np.where(n - c < k, 1.0, out)


def mean_pass_at_k(num_correct, num_samples: int, ks: Sequence[int]) -> dict[int, float]:
    """{k: mean over problems of pass@k} from the correct samples c of each problem (of n)."""
    counts = np.asarray(num_correct).astype(np.int64)
    return {int(k): float(pass_at_k(counts, num_samples, k).mean()) for k in ks}


def guessing_pass_at_k(answer_probability, ks: Sequence[int]) -> dict[int, float]:
    """{k: mean over problems of 1 - (1 - p)^k}: pass@k of a guesser that ignores the problem and
    draws each of its k answers independently from a distribution giving each problem's right
    answer probability p (e.g. how often that answer comes up among training problems' answers).
    What a policy's pass@k must beat before it shows any skill at that k."""
    p = np.asarray(answer_probability, np.float64)
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError("answer_probability must lie in [0, 1]")
    return {int(k): float(np.mean(1.0 - (1.0 - p) ** k)) for k in ks}


def answer_shares(answers: Sequence[str], pool: Sequence[str]) -> np.ndarray:
    """For each answer, the share of `pool` that is exactly it: the probability that a guesser
    who draws from the pool's answers names it (`guessing_pass_at_k`'s answer_probability)."""
    counts = Counter(pool)
    return np.array([counts[a] / max(len(pool), 1) for a in answers], np.float64)


def coverage(num_correct) -> float:
    """Share of problems that at least one of the n samples solves (pass@n)."""
    return float((np.asarray(num_correct) > 0).mean())


def solvable_sets(num_correct: dict) -> dict[str, float]:
    """Shares of the problems that some sample solves under both of two policies, under one only
    ("<name> only") or under neither, from each policy's correct counts ({name: [P]})."""
    (a_name, a), (b_name, b) = ((name, np.asarray(c) > 0) for name, c in num_correct.items())
    return {
        "both": float((a & b).mean()),
        f"{a_name} only": float((a & ~b).mean()),
        f"{b_name} only": float((~a & b).mean()),
        "neither": float((~a & ~b).mean()),
    }


def crossover_k(ks: Sequence[int], mean_changes: Sequence[float]) -> int | None:
    """The smallest k from which every mean change in pass@k is <= 0 (None if the last is > 0)."""
    crossover = None
    for k, change in zip(reversed(ks), reversed(mean_changes)):
        if change > 0:
            break
        crossover = k
    return crossover


SHARPENING_RULE = (
    "with 95% intervals over seeds of the paired changes (after - before): 'broadening' if the "
    "change in pass@k at the largest k lies above 0 (more problems reachable at all); "
    "'sharpening' if the change in pass@1 lies above 0 while the change at the largest k does "
    "not (its interval contains 0 or lies below it: the same problems, solved more reliably); "
    "'neither' otherwise, and with one seed (no interval)."
)


def classify_change(
    change_at_1: tuple[float, float], change_at_largest: tuple[float, float], *, largest_k: int
) -> dict[str, str]:
    """Sharpening or broadening, from (mean, 95% half-width) of the change in pass@1 and in
    pass@k at the largest k (`SHARPENING_RULE`). Returns {"verdict", "explanation", "rule"}."""
    (m1, h1), (mk, hk) = change_at_1, change_at_largest
    if np.isnan(h1) or np.isnan(hk):
        verdict = "neither"
    elif mk - hk > 0:
        verdict = "broadening"
    elif m1 - h1 > 0:
        verdict = "sharpening"
    else:
        verdict = "neither"
    if np.isnan(hk):
        where = "has no interval (one seed)"
    elif mk - hk > 0:
        where = "lies above 0"
    elif mk + hk < 0:
        where = "lies below 0"
    else:
        where = "has an interval that contains 0"
    explanation = (
        f"pass@1 changes by {m1:+.3f} ± {h1:.3f} and pass@{largest_k} by {mk:+.3f} ± {hk:.3f}: "
        f"the change at k = {largest_k} {where}."
    )
    return {"verdict": verdict, "explanation": explanation, "rule": SHARPENING_RULE}
