"""Best-of-n: its KL to the base policy and an unbiased estimate of its expected reward.

Best-of-n draws n responses from the base policy and keeps the one a (proxy) reward model scores
highest. Its KL divergence from the base policy has the closed form (Stiennon et al. 2020;
Gao et al. 2022, Appendix) KL_bon = log n - (n - 1) / n, independent of the task.

Estimating E[gold(best of n)] by repeating the experiment is noisy and wasteful. From one pool of
N >= n i.i.d. samples per prompt, sorted by proxy reward, the probability that the i-th smallest
(1-based) is the best of a uniformly random n-subset is C(i-1, n-1) / C(N, n), which gives an
unbiased estimator of E[gold(argmax-proxy of n)] (Nakano et al. 2021; Gao et al. 2022).
"""

from __future__ import annotations

import math

import numpy as np


def best_of_n_kl(n: int | np.ndarray) -> np.ndarray:
    """KL(best-of-n || base) = log n - (n - 1) / n, in nats."""
    n = np.asarray(n, dtype=np.float64)
    return np.log(n) - (n - 1) / n


def best_of_n_weights(pool_size: int, n: int) -> np.ndarray:
    """w[i] = P(sample of rank i, 0-based ascending, is the best of a random n-subset)."""
    if not 1 <= n <= pool_size:
        raise ValueError(f"need 1 <= n <= pool size, got n={n}, pool size={pool_size}")
    log_total = math.lgamma(pool_size + 1) - math.lgamma(n + 1) - math.lgamma(pool_size - n + 1)
    weights = np.zeros(pool_size)
    for i in range(n - 1, pool_size):  # rank i has i smaller samples; choose n-1 of them
        log_ways = math.lgamma(i + 1) - math.lgamma(n) - math.lgamma(i - n + 2)
        weights[i] = math.exp(log_ways - log_total)
    return weights


def best_of_n_estimate(proxy: np.ndarray, gold: np.ndarray, n: int) -> dict[str, float]:
    """Unbiased estimates of the proxy and gold reward of best-of-n (selected by proxy).

    Args:
      proxy: [num_prompts, pool_size] proxy rewards of the pool of samples per prompt.
      gold: [num_prompts, pool_size] gold rewards of the same samples.
      n: number of samples best-of-n picks from (n <= pool_size).
    Returns: {'proxy', 'gold', 'kl'} averaged over prompts.
    """
    proxy, gold = np.asarray(proxy, np.float64), np.asarray(gold, np.float64)
    if proxy.shape != gold.shape or proxy.ndim != 2:
        raise ValueError(
            f"proxy and gold must both be [prompts, pool], got {proxy.shape}, {gold.shape}"
        )
    order = np.argsort(proxy, axis=1, kind="stable")
    weights = best_of_n_weights(proxy.shape[1], n)
    sorted_proxy = np.take_along_axis(proxy, order, axis=1)
    sorted_gold = np.take_along_axis(gold, order, axis=1)
    return {
        "proxy": float(np.mean(sorted_proxy @ weights)),
        "gold": float(np.mean(sorted_gold @ weights)),
        "kl": float(best_of_n_kl(n)),
    }
