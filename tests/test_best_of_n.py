"""Best-of-n estimator: weights sum to 1, exact on small pools, closed-form KL."""

import itertools

import numpy as np
import pytest

from alignax.analysis.best_of_n import (
    best_of_n_estimate,
    best_of_n_kl,
    best_of_n_per_prompt,
    best_of_n_weights,
    majority_vote_accuracy,
    pick_probabilities,
)


def test_kl_closed_form_values():
    np.testing.assert_allclose(best_of_n_kl([1, 2, 4]), [0.0, np.log(2) - 0.5, np.log(4) - 0.75])


@pytest.mark.parametrize("pool, n", [(5, 1), (5, 3), (6, 6), (30, 7)])
def test_weights_are_a_distribution(pool, n):
    w = best_of_n_weights(pool, n)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(w[: n - 1] == 0)  # the n-1 smallest can never be the best of n


def test_estimate_equals_enumerating_every_subset():
    """The estimator is the exact average over all n-subsets of the pool."""
    rng = np.random.default_rng(0)
    proxy, gold = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    n = 3
    exact_gold = np.mean(
        [
            np.mean(
                [
                    gold[p, list(s)][np.argmax(proxy[p, list(s)])]
                    for s in itertools.combinations(range(7), n)
                ]
            )
            for p in range(3)
        ]
    )
    assert best_of_n_estimate(proxy, gold, n)["gold"] == pytest.approx(exact_gold)


def test_n_equal_one_is_the_pool_mean_and_n_equal_pool_is_the_max():
    rng = np.random.default_rng(1)
    proxy = rng.normal(size=(4, 9))
    assert best_of_n_estimate(proxy, proxy, 1)["proxy"] == pytest.approx(proxy.mean())
    assert best_of_n_estimate(proxy, proxy, 9)["proxy"] == pytest.approx(proxy.max(1).mean())


def test_pick_probabilities_give_the_same_estimate_per_prompt():
    rng = np.random.default_rng(3)
    proxy, gold = rng.normal(size=(5, 12)), rng.normal(size=(5, 12))
    for n in (1, 3, 12):
        pick = pick_probabilities(proxy, n)
        np.testing.assert_allclose(pick.sum(axis=1), 1.0)
        _, want = best_of_n_per_prompt(proxy, gold, n)
        np.testing.assert_allclose((pick * gold).sum(axis=1), want, rtol=1e-12)


def test_bad_n_is_refused():
    with pytest.raises(ValueError, match="n <= pool size"):
        best_of_n_weights(4, 5)


def test_pool_kl_matches_the_closed_form_for_distinct_samples_and_is_zero_for_one_response():
    from alignax.analysis.best_of_n import best_of_n_pool_kl

    rng = np.random.default_rng(0)
    proxy = rng.normal(size=(2, 20000))
    distinct = np.tile(np.arange(20000), (2, 1))
    # With N distinct samples KL = sum_i P_i log(N P_i), P_i = (i/N)^n - ((i-1)/N)^n: as N grows
    # it tends to log n - (n-1)/n.
    assert best_of_n_pool_kl(proxy, distinct, 4) == pytest.approx(best_of_n_kl(4), abs=2e-3)
    # Every sample the same response: best-of-n is the policy itself.
    assert best_of_n_pool_kl(np.zeros((1, 50)), np.zeros((1, 50), int), 8) == pytest.approx(0.0)
    # Two equally likely responses: best-of-n picks the better with prob 1 - 2^-n.
    scores = np.array([[0.0, 1.0] * 5])
    ids = np.array([[0, 1] * 5])
    p = 1 - 0.5**3
    expected = p * np.log(p / 0.5) + (1 - p) * np.log((1 - p) / 0.5)
    assert best_of_n_pool_kl(scores, ids, 3) == pytest.approx(expected)


def test_curve_standard_errors_shrink_with_more_prompts_and_match_the_mean():
    from alignax.analysis.best_of_n import best_of_n_curve

    rng = np.random.default_rng(2)
    proxy = rng.normal(size=(400, 16))
    gold = proxy + rng.normal(size=proxy.shape)
    few = best_of_n_curve(proxy[:25], gold[:25], [1, 4], num_bootstrap=400)
    many = best_of_n_curve(proxy, gold, [1, 4], num_bootstrap=400)
    assert many[1]["gold"] == pytest.approx(best_of_n_estimate(proxy, gold, 4)["gold"])
    # Bootstrap SE of a mean over prompts ~ std / sqrt(prompts): 4x the prompts, half the SE.
    assert 1.5 < few[1]["gold_se"] / many[1]["gold_se"] < 6
    per_prompt_std = np.std(gold.mean(1))
    assert many[0]["gold_se"] == pytest.approx(per_prompt_std / np.sqrt(400), rel=0.2)


def test_best_of_n_report_prints_95_percent_intervals():
    """One interval convention in every table: ± 1.96 SE, as the text says."""
    from configs.best_of_n import get_config
    from experiments.best_of_n import report

    row = {"n": 4, "kl_bound": 0.64, "kl_pool": 0.6, "proxy": 1.0, "proxy_se": 0.1}
    curves = {
        "reward model": [{**row, "gold": 0.5, "gold_se": 0.05}],
        "oracle": [{**row, "gold": 1.2, "gold_se": 0.0}],
    }
    prov = {"command": "cmd", "commit": "abc", "dirty": False, "machine": "here"}
    text = report(get_config(), {"task": "review", "curves": curves, "num_prompts": 256}, {}, prov)
    assert "95% intervals (1.96 SE" in text
    assert "| 4 | 0.64 | 0.60 | 1.00 ± 0.20 | 0.50 ± 0.10 | 1.20 |" in text


def test_majority_vote_counts_the_most_frequent_answer_and_ignores_samples_without_one():
    rng = np.random.default_rng(0)
    # Problem 0: the true answer 0 is the mode; problem 1: no sample answers; problem 2: the
    # true answer 2 never appears.
    answers = np.array([[0, 0, 0, 1, 1], [-1] * 5, [0, 1, 0, 1, 1]])
    truth = np.array([0, -1, -1])
    whole = majority_vote_accuracy(answers, truth, 5, draws=7, rng=rng)
    np.testing.assert_array_equal(whole, [1.0, 0.0, 0.0])
    # n = 1: the share of samples giving the true answer (in expectation over draws).
    one = majority_vote_accuracy(answers, truth, 1, draws=20000, rng=rng)
    assert one[0] == pytest.approx(0.6, abs=0.015) and one[1:].tolist() == [0.0, 0.0]


def test_majority_vote_breaks_a_tie_at_random_and_drops_abstentions():
    rng = np.random.default_rng(1)
    # Two votes each for answers 0 and 1, one sample without an answer: a fair coin at n = 5.
    answers = np.array([[0, 1, -1, 0, 1]])
    tie = majority_vote_accuracy(answers, np.array([1]), 5, draws=20000, rng=rng)
    assert tie[0] == pytest.approx(0.5, abs=0.015)
    with pytest.raises(ValueError, match="n=6"):
        majority_vote_accuracy(answers, np.array([1]), 6, draws=1, rng=rng)


def test_majority_vote_matches_enumerating_every_subset():
    # Pool [0, 0, 1, 1, 1, 2], truth 0, n = 3: the subsets whose mode is 0 outright are those
    # with both 0s (4 of 20); those with one each of 0, 1, 2 (2 * 3 * 1 = 6) are a three-way
    # tie, won by 0 a third of the time: (4 + 6 / 3) / 20 = 0.3.
    rng = np.random.default_rng(2)
    answers = np.array([[0, 0, 1, 1, 1, 2]])
    share = majority_vote_accuracy(answers, np.array([0]), 3, draws=40000, rng=rng)
    assert share[0] == pytest.approx(0.3, abs=0.01)
