"""How varied a policy's samples are: the diversity collapse monitor of RL and preference tuning.

    distinct_n(responses, 2)      # unique bigrams / all bigrams of the batch (Li et al. 2016)
    self_bleu(responses)          # mean BLEU-4 of each response against the others (Zhu et al.
                                  # 2018, Texygen): 1 when every response is the same
    diversity(tokens, mask)       # both, from a sampled batch's response tokens

A response is a sequence of token ids (its EOS included when it has one). distinct-n falls and
self-BLEU rises as a policy's samples collapse onto a few responses; the per-token entropy of the
policy on its own samples (alignax.analysis.policy_eval) falls with them.

Self-BLEU here: for each response, its modified n-gram precisions p_n (n = 1..4) against the
other responses as references, each n-gram's count clipped at its largest count in any other
response; smoothed as in Lin and Och (2004, "ORANGE": add one to the matches and the count of
every n > 1), combined as exp(mean_n log p_n) and multiplied by the brevity penalty
exp(min(0, 1 - r / c)) with r the length of the other response closest to c, the response's
length. Responses shorter than n contribute no n-grams at that n; a response with no n-grams at
all (empty) is left out of the mean. The clipping uses each n-gram's two largest counts, so the
whole batch costs O(tokens), not O(responses^2).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence

import numpy as np


def _ngrams(response: Sequence[int], n: int) -> Counter:
    return Counter(tuple(response[i : i + n]) for i in range(len(response) - n + 1))


def distinct_n(responses: Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams over all n-grams of the batch (NaN when no response has n tokens)."""
    grams = [g for r in responses for g in (tuple(r[i : i + n]) for i in range(len(r) - n + 1))]
    return len(set(grams)) / len(grams) if grams else float("nan")


def _largest_elsewhere(counts: list[Counter]) -> list[dict]:
    """For each response i: {n-gram: its largest count in any response j != i}, for i's own
    n-grams, from each n-gram's largest count, how many responses hold it, and the second
    largest."""
    top: dict[tuple, list[int]] = {}  # n-gram -> [largest, responses holding it, second]
    for c in counts:
        for g, k in c.items():
            first, holders, second = top.get(g, (0, 0, 0))
            if k > first:
                top[g] = [k, 1, first]
            elif k == first:
                top[g] = [first, holders + 1, second]
            else:
                top[g] = [first, holders, max(second, k)]
    out = []
    for c in counts:
        elsewhere = {}
        for g, k in c.items():
            first, holders, second = top[g]
            elsewhere[g] = second if (k == first and holders == 1) else first
        out.append(elsewhere)
    return out


def self_bleu(responses: Sequence[Sequence[int]], max_n: int = 4) -> float:
    """Mean BLEU-`max_n` of each response against all the others (module docstring); NaN with
    fewer than two non-empty responses."""
    responses = [list(r) for r in responses if len(r)]
    if len(responses) < 2:
        return float("nan")
    lengths = np.array([len(r) for r in responses])
    order = np.sort(lengths)
    log_precision = np.zeros(len(responses))
    for n in range(1, max_n + 1):
        counts = [_ngrams(r, n) for r in responses]
        elsewhere = _largest_elsewhere(counts)
        for i, (c, other) in enumerate(zip(counts, elsewhere, strict=True)):
            total = sum(c.values())
            matches = sum(min(k, other[g]) for g, k in c.items())
            smooth = 1 if n > 1 else 0
            if total + smooth == 0 or matches + smooth == 0:
                log_precision[i] = -np.inf
                continue
            log_precision[i] += np.log((matches + smooth) / (total + smooth)) / max_n
    scores = []
    for i, c in enumerate(lengths):
        # The closest other length: the sorted lengths with one copy of c removed.
        at = bisect.bisect_left(order, c)
        others = np.delete(order, at)
        j = bisect.bisect_left(others, c)
        near = [others[k] for k in (j - 1, j) if 0 <= k < len(others)]
        r = min(near, key=lambda x: (abs(x - c), x))
        brevity = min(0.0, 1.0 - r / c)
        scores.append(np.exp(log_precision[i] + brevity))
    return float(np.mean(scores))


def responses_of(tokens_NxL: np.ndarray, mask_NxL: np.ndarray) -> list[list[int]]:
    """Each row's masked tokens, in order."""
    return [row[m > 0].tolist() for row, m in zip(np.asarray(tokens_NxL), np.asarray(mask_NxL))]


def diversity(tokens_NxL: np.ndarray, response_mask_NxL: np.ndarray) -> dict[str, float]:
    """distinct-1, distinct-2 and self-BLEU of a batch of responses (the tokens under the mask)."""
    responses = responses_of(tokens_NxL, response_mask_NxL)
    return {
        "distinct_1": distinct_n(responses, 1),
        "distinct_2": distinct_n(responses, 2),
        "self_bleu": self_bleu(responses),
    }
