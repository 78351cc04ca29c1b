"""The diversity monitor: distinct-n and self-BLEU on hand cases, limits, and against a direct
O(responses^2) computation of the same definition."""

import math
from collections import Counter

import numpy as np
import pytest

from alignax.analysis.diversity import distinct_n, diversity, self_bleu


def test_distinct_n_hand_cases():
    assert distinct_n([[1, 2, 3], [1, 2, 4]], 1) == 4 / 6
    assert distinct_n([[1, 2, 3], [1, 2, 4]], 2) == 3 / 4  # (1,2) twice, (2,3), (2,4)
    assert distinct_n([[5, 5, 5, 5]], 1) == 1 / 4
    assert math.isnan(distinct_n([[1], [2]], 2))  # no response has a bigram


def test_self_bleu_limits_and_a_hand_case():
    same = [[1, 2, 3, 4, 5]] * 4
    assert self_bleu(same) == pytest.approx(1.0)
    assert self_bleu([[1, 2, 3], [4, 5, 6]]) == 0.0  # no unigram in common
    # [1,2,3,4] against [1,2,3,5]: p1 = 3/4, p2 = (2+1)/(3+1), p3 = (1+1)/(2+1),
    # p4 = (0+1)/(1+1); equal lengths, no brevity penalty; the same by symmetry for the other.
    expected = (0.75 * 0.75 * (2 / 3) * 0.5) ** 0.25
    assert self_bleu([[1, 2, 3, 4], [1, 2, 3, 5]]) == pytest.approx(expected)
    assert math.isnan(self_bleu([[1, 2], []]))  # one non-empty response: nothing to compare


def direct_self_bleu(responses, max_n=4):
    """The same definition, each response clipped against every other one directly."""
    scores = []
    for i, r in enumerate(responses):
        others = [o for j, o in enumerate(responses) if j != i]
        log_p = 0.0
        for n in range(1, max_n + 1):
            own = Counter(tuple(r[k : k + n]) for k in range(len(r) - n + 1))
            most = Counter()
            for o in others:
                for g, c in Counter(tuple(o[k : k + n]) for k in range(len(o) - n + 1)).items():
                    most[g] = max(most[g], c)
            matches = sum(min(c, most[g]) for g, c in own.items())
            smooth = 1 if n > 1 else 0
            if matches + smooth == 0:
                log_p = -math.inf
                break
            log_p += math.log((matches + smooth) / (sum(own.values()) + smooth)) / max_n
        ref = min((len(o) for o in others), key=lambda x: (abs(x - len(r)), x))
        scores.append(math.exp(log_p + min(0.0, 1 - ref / len(r))))
    return sum(scores) / len(scores)


@pytest.mark.parametrize("seed", range(5))
def test_self_bleu_agrees_with_the_direct_computation(seed):
    """Random batches with repeated tokens and responses, varied lengths: the O(tokens)
    clipping by each n-gram's two largest counts equals clipping against every other response."""
    rng = np.random.default_rng(seed)
    responses = [list(rng.integers(0, 4, size=rng.integers(1, 9))) for _ in range(12)]
    responses += [responses[0], responses[3]]  # exact duplicates: the top count is shared
    assert self_bleu(responses) == pytest.approx(direct_self_bleu(responses), rel=1e-12)


def test_diversity_reads_only_the_masked_tokens():
    tokens = np.array([[9, 1, 2, 3, 0], [9, 1, 2, 3, 7]])
    mask = np.array([[0, 1, 1, 1, 0], [0, 1, 1, 1, 0]])
    out = diversity(tokens, mask)
    assert out == {"distinct_1": 0.5, "distinct_2": 0.5, "self_bleu": pytest.approx(1.0)}
