"""Best-of-n estimator: weights sum to 1, exact on small pools, closed-form KL."""

import itertools

import numpy as np
import pytest

from alignax.analysis.best_of_n import best_of_n_estimate, best_of_n_kl, best_of_n_weights


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
    exact_gold = np.mean([
        np.mean([gold[p, list(s)][np.argmax(proxy[p, list(s)])]
                 for s in itertools.combinations(range(7), n)])
        for p in range(3)
    ])
    assert best_of_n_estimate(proxy, gold, n)["gold"] == pytest.approx(exact_gold)


def test_n_equal_one_is_the_pool_mean_and_n_equal_pool_is_the_max():
    rng = np.random.default_rng(1)
    proxy = rng.normal(size=(4, 9))
    assert best_of_n_estimate(proxy, proxy, 1)["proxy"] == pytest.approx(proxy.mean())
    assert best_of_n_estimate(proxy, proxy, 9)["proxy"] == pytest.approx(proxy.max(1).mean())


def test_bad_n_is_refused():
    with pytest.raises(ValueError, match="n <= pool size"):
        best_of_n_weights(4, 5)
