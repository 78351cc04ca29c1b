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


def powers_of_two(pool_size: int) -> list[int]:
    """The n a best-of-n curve is read at: 1, 2, 4, ... up to `pool_size`."""
    return [2**k for k in range(int(np.log2(pool_size)) + 1)]


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


def pick_probabilities(score_PxS: np.ndarray, n: int) -> np.ndarray:
    """[P, S]: each pool sample's probability of being best-of-n's pick by `score` (ranked as
    `best_of_n_per_prompt` ranks them), so E[f(pick)] = sum over the pool of p * f."""
    order = np.argsort(score_PxS, axis=1, kind="stable")
    out = np.zeros(np.shape(score_PxS))
    np.put_along_axis(out, order, best_of_n_weights(out.shape[1], n)[None, :], axis=1)
    return out


def best_of_n_per_prompt(proxy: np.ndarray, gold: np.ndarray, n: int):
    """Per-prompt unbiased estimates ([num_prompts] each) of the proxy and gold reward of the
    response best-of-n picks by proxy, from pools `proxy`, `gold` [num_prompts, pool_size]."""
    proxy, gold = np.asarray(proxy, np.float64), np.asarray(gold, np.float64)
    if proxy.shape != gold.shape or proxy.ndim != 2:
        raise ValueError(
            f"proxy and gold must both be [prompts, pool], got {proxy.shape}, {gold.shape}"
        )
    order = np.argsort(proxy, axis=1, kind="stable")
    weights = best_of_n_weights(proxy.shape[1], n)
    sorted_proxy = np.take_along_axis(proxy, order, axis=1)
    sorted_gold = np.take_along_axis(gold, order, axis=1)
    return sorted_proxy @ weights, sorted_gold @ weights


def best_of_n_estimate(proxy: np.ndarray, gold: np.ndarray, n: int) -> dict[str, float]:
    """Unbiased estimates of the proxy and gold reward of best-of-n (selected by proxy).

    Args:
      proxy: [num_prompts, pool_size] proxy rewards of the pool of samples per prompt.
      gold: [num_prompts, pool_size] gold rewards of the same samples.
      n: number of samples best-of-n picks from (n <= pool_size).
    Returns: {'proxy', 'gold', 'kl'} averaged over prompts.
    """
    proxy_P, gold_P = best_of_n_per_prompt(proxy, gold, n)
    return {
        "proxy": float(np.mean(proxy_P)),
        "gold": float(np.mean(gold_P)),
        "kl": float(best_of_n_kl(n)),
    }


def best_of_n_pool_kl(proxy: np.ndarray, response_ids: np.ndarray, n: int) -> float:
    """Plug-in estimate of KL(best-of-n || policy) on each prompt's pool, averaged over prompts.

    `log n - (n-1)/n` holds when no two samples tie; identical responses (equal
    `response_ids`, hence equal proxy scores) make the true KL smaller (Beirami et al. 2024).
    Here the policy is the pool's empirical distribution over distinct responses y (mass
    p_y = count / N); best-of-n of it picks y with probability F(y)^n - F(y-)^n, F the CDF in
    proxy order, and KL = sum_y P_bon(y) log(P_bon(y) / p_y). It cannot exceed log N, so it
    under-estimates once n approaches the pool size.
    """
    proxy, response_ids = np.asarray(proxy, np.float64), np.asarray(response_ids)
    kls = []
    for scores, ids in zip(proxy, response_ids):
        unique_ids, first, counts = np.unique(ids, return_index=True, return_counts=True)
        order = np.argsort(scores[first], kind="stable")
        mass = counts[order] / counts.sum()
        cdf = np.cumsum(mass)
        previous = np.concatenate([[0.0], cdf[:-1]])
        bon = np.clip(cdf, 0, 1) ** n - previous**n
        keep = bon > 0
        kls.append(float(np.sum(bon[keep] * np.log(bon[keep] / mass[keep]))))
    return float(np.mean(kls))


def best_of_n_curve(
    proxy: np.ndarray,
    gold: np.ndarray,
    ns,
    *,
    response_ids: np.ndarray | None = None,
    num_bootstrap: int = 1000,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Best-of-n for each n in `ns`: unbiased means of proxy and gold with bootstrap standard
    errors over prompts (resampling prompts, the unit the pool was drawn for), the KL bound
    log n - (n-1)/n and, given `response_ids`, its plug-in estimate on the pool."""
    rng = np.random.default_rng(seed)
    num_prompts = np.shape(proxy)[0]
    resamples = rng.integers(0, num_prompts, size=(num_bootstrap, num_prompts))
    rows = []
    for n in ns:
        proxy_P, gold_P = best_of_n_per_prompt(proxy, gold, n)
        row = {
            "n": int(n),
            "kl_bound": float(best_of_n_kl(n)),
            "proxy": float(proxy_P.mean()),
            "proxy_se": float(proxy_P[resamples].mean(1).std()),
            "gold": float(gold_P.mean()),
            "gold_se": float(gold_P[resamples].mean(1).std()),
        }
        if response_ids is not None:
            row["kl_pool"] = best_of_n_pool_kl(proxy, response_ids, n)
        rows.append(row)
    return rows


def majority_vote_accuracy(
    answers_PxN: np.ndarray, truth_P: np.ndarray, n: int, *, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """[P] per problem, the share of `draws` random n-subsets of its pool (drawn without
    replacement) whose most frequent answer is the true one: majority voting (self-consistency,
    Wang et al. 2023) over n samples. Answers are integer codes per problem, -1 for a sample
    that gives none (it has no vote); `truth_P` is the true answer's code (-1 when no sample
    gives it). Ties are broken uniformly at random; a subset without any answer is wrong. At
    n = pool size every draw is the whole pool, so the share is exact."""
    answers_PxN, truth_P = np.asarray(answers_PxN), np.asarray(truth_P)
    pool = answers_PxN.shape[1]
    if not 1 <= n <= pool:
        raise ValueError(f"need 1 <= n <= pool size, got n={n}, pool size={pool}")
    out = np.zeros(len(answers_PxN))
    for p, (answers, truth) in enumerate(zip(answers_PxN, truth_P, strict=True)):
        if truth < 0:
            continue  # no sample gives the true answer: no vote can pick it
        kinds = int(answers.max()) + 2  # code -1 counts in column 0, answer a in column a + 1
        subsets = np.argsort(rng.random((draws, pool)), axis=1)[:, :n]
        cells = (np.arange(draws)[:, None] * kinds + answers[subsets] + 1).ravel()
        votes = np.bincount(cells, minlength=draws * kinds).reshape(draws, kinds)[:, 1:]
        winner = np.argmax(votes + 0.5 * rng.random(votes.shape), axis=1)
        decided = votes.max(axis=1) > 0
        out[p] = np.mean(decided & (winner == truth))
    return out
