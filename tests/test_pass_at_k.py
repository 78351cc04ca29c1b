"""The unbiased pass@k estimator (Chen et al. 2021): limits, closed cases and agreement with
enumerating every k-subset of the samples."""

import itertools
import math

import numpy as np
import pytest

from alignax.analysis.pass_at_k import (
    answer_shares,
    classify_change,
    coverage,
    crossover_k,
    guessing_pass_at_k,
    mean_pass_at_k,
    pass_at_k,
    solvable_sets,
)


def brute_force(outcomes: list[int], k: int) -> float:
    """Share of the k-subsets of the samples that hold a correct one."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


def test_no_correct_sample_gives_zero():
    assert np.all(pass_at_k(np.zeros(3, int), 10, 4) == 0.0)


def test_all_correct_gives_one():
    assert np.all(pass_at_k(np.full(3, 10), 10, 4) == 1.0)


@pytest.mark.parametrize("n", [1, 5, 64])
def test_k_one_is_the_share_correct(n):
    c = np.arange(n + 1)
    np.testing.assert_allclose(pass_at_k(c, n, 1), c / n, rtol=0, atol=1e-12)


def test_fewer_wrong_than_k_gives_one():
    # n - c < k: every k-subset must contain a correct sample.
    n, k = 16, 8
    c = np.arange(n - k + 1, n + 1)
    assert np.all(pass_at_k(c, n, k) == 1.0)
    assert pass_at_k(np.array([n - k]), n, k)[0] < 1.0  # n - c = k: one all-wrong subset


def test_hand_computed_case():
    # n = 4, c = 1, k = 2: 1 - C(3, 2) / C(4, 2) = 1 - 3/6.
    assert pass_at_k(np.array([1]), 4, 2)[0] == pytest.approx(0.5, abs=1e-15)


@pytest.mark.parametrize("n", [1, 2, 4, 6, 7])
def test_agrees_with_enumerating_k_subsets(n):
    for c in range(n + 1):
        outcomes = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(np.array([c]), n, k)[0] == pytest.approx(
                brute_force(outcomes, k), abs=1e-12
            ), (n, c, k)


def test_matches_exact_binomials_at_large_n():
    # The product form against exact integer binomials where the naive float ratio is huge.
    n, k = 200, 50
    c = np.array([0, 1, 3, 20, 100, 150, 200])
    exact = [1 - math.comb(n - ci, k) / math.comb(n, k) for ci in c]
    np.testing.assert_allclose(pass_at_k(c, n, k), exact, rtol=1e-12, atol=1e-15)


def test_monotone_in_k_and_c():
    n = 32
    c = np.arange(n + 1)
    curves = np.stack([pass_at_k(c, n, k) for k in range(1, n + 1)])  # [k, c]
    assert np.all(np.diff(curves, axis=0) >= -1e-12)  # more tries never hurt
    assert np.all(np.diff(curves, axis=1) >= -1e-12)  # more correct samples never hurt


def test_not_the_with_replacement_formula():
    # 1 - (1 - c/n)^k samples with replacement and is lower: n = 4, c = 2, k = 2 gives 0.75,
    # the estimator 1 - C(2, 2)/C(4, 2) = 5/6.
    assert pass_at_k(np.array([2]), 4, 2)[0] == pytest.approx(5 / 6, abs=1e-15)


def test_vectorised_over_any_shape():
    c = np.array([[0, 3], [5, 8]])
    out = pass_at_k(c, 8, 3)
    assert out.shape == (2, 2)
    for idx in np.ndindex(c.shape):
        assert out[idx] == pass_at_k(np.array([c[idx]]), 8, 3)[0]


def test_mean_over_problems_and_coverage():
    correct = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], bool)
    counts = correct.sum(axis=1)
    curve = mean_pass_at_k(counts, 4, (1, 2, 4))
    assert curve[1] == pytest.approx((0.25 + 0 + 1) / 3)
    assert curve[2] == pytest.approx((0.5 + 0 + 1) / 3)
    assert curve[4] == pytest.approx(coverage(counts)) == pytest.approx(2 / 3)


def test_solvable_sets_partition_the_problems():
    before, after = np.array([0, 3, 0, 5, 1]), np.array([0, 0, 2, 4, 1])
    sets = solvable_sets({"sft": before, "rl": after})
    assert sets == {"both": 0.4, "sft only": 0.2, "rl only": 0.2, "neither": 0.2}
    assert sets["both"] + sets["sft only"] == pytest.approx(coverage(before))


def test_crossover_k_is_where_the_change_stays_at_or_below_zero():
    ks = (1, 2, 4, 8)
    assert crossover_k(ks, (0.2, 0.1, -0.01, -0.05)) == 4
    assert crossover_k(ks, (0.2, -0.1, 0.01, -0.05)) == 8  # a later rise resets it
    assert crossover_k(ks, (0.2, 0.1, 0.0, 0.01)) is None
    assert crossover_k(ks, (-0.2, -0.1, 0.0, 0.0)) == 1


@pytest.mark.parametrize(
    "c, n, k", [([1], 4, 0), ([1], 4, 5), ([5], 4, 2), ([-1], 4, 2), ([0.5], 4, 2)]
)
def test_rejects_invalid_arguments(c, n, k):
    with pytest.raises(ValueError):
        pass_at_k(np.array(c), n, k)


@pytest.mark.parametrize(
    "at_1, at_largest, verdict",
    [
        ((0.10, 0.02), (0.00, 0.03), "sharpening"),  # pass@1 up, large k unchanged
        ((0.10, 0.02), (-0.05, 0.01), "sharpening"),  # pass@1 up, large k down
        ((0.10, 0.02), (0.05, 0.01), "broadening"),  # large k up
        ((-0.01, 0.02), (0.05, 0.01), "broadening"),  # large k up whatever pass@1 does
        ((0.01, 0.02), (0.00, 0.03), "neither"),  # pass@1 interval contains 0
        ((0.10, float("nan")), (0.0, float("nan")), "neither"),  # one seed: no interval
    ],
)
def test_classify_change(at_1, at_largest, verdict):
    answer = classify_change(at_1, at_largest, largest_k=16)
    assert answer["verdict"] == verdict
    assert "pass@16" in answer["explanation"] and answer["rule"]


def test_guessing_baseline_hand_cases_and_limits():
    """1 - (1 - p)^k averaged over problems: a sure answer is always found, an impossible one
    never, and at k = 1 the guesser scores the mean probability of the right answers."""
    p = np.array([0.0, 1.0, 0.5, 0.1])
    guess = guessing_pass_at_k(p, ks=(1, 2, 10))
    assert guess[1] == pytest.approx(p.mean())
    assert guess[2] == pytest.approx(np.mean([0.0, 1.0, 0.75, 1 - 0.9**2]))
    assert guess[10] == pytest.approx(np.mean([0.0, 1.0, 1 - 0.5**10, 1 - 0.9**10]))
    # Simulated: a guesser drawing k answers from the distribution finds the right one as often.
    rng = np.random.default_rng(0)
    hits = (rng.random((200_000, 10)) < 0.1).any(axis=1).mean()
    assert abs(hits - guessing_pass_at_k([0.1], ks=(10,))[10]) < 0.005
    with pytest.raises(ValueError, match="answer_probability"):
        guessing_pass_at_k([1.5], ks=(1,))


def test_answer_shares_are_each_answers_share_of_the_pool():
    pool = ["7", "7", "12", "0"]
    np.testing.assert_array_equal(answer_shares(["7", "0", "99"], pool), [0.5, 0.25, 0.0])
    assert answer_shares(["7"], []).tolist() == [0.0]  # an empty pool names nothing
