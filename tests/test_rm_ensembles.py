"""The ensemble study's analysis on pools whose answers are known, and its checks before it runs
(its end-to-end run is the notebook's fixture, tests/test_notebooks.py)."""

import numpy as np
import pytest

from alignax.analysis.ensembles import (
    aggregate,
    combine,
    seed_table,
    standardised_logits,
)
from alignax.analysis.stats import cross_fitted_peak
from configs import rm_ensembles as config_module
from experiments import rm_ensembles
from tests.helpers import preset_config

NS = [1, 2, 4, 8]


def test_combinations_follow_their_formulas_on_standardised_logits():
    p = np.array([[[0.5, 0.9]], [[0.1, 0.7]]])  # 2 members, 1 problem, 2 samples
    z = standardised_logits(p)
    # Each member standardised over its pool: mean 0, standard deviation 1.
    np.testing.assert_allclose(z.mean(axis=(1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(combine(z, "mean", 0.5), z.mean(0))
    np.testing.assert_allclose(combine(z, "wco", 0.5), np.minimum(z[0], z[1]))
    np.testing.assert_allclose(combine(z, "uwo", 2.0), z.mean(0) - 2.0 * ((z[0] - z[1]) / 2) ** 2)
    # UWO with no penalty is the mean.
    np.testing.assert_allclose(combine(z, "uwo", 0.0), combine(z, "mean", 0.0))
    with pytest.raises(ValueError, match="unknown combination 'max'"):
        combine(z, "max", 0.0)


def test_the_peak_is_chosen_on_one_half_of_the_problems_and_read_on_the_other():
    # Even problems peak at column 0, odd ones at column 1: each half's choice is read on the
    # other, where it is the worse column.
    per_problem = np.array([[1.0, 0.0], [0.2, 0.6], [1.0, 0.0], [0.2, 0.6]])
    assert cross_fitted_peak(per_problem) == pytest.approx(np.mean([0.2, 0.0]))
    # Where both halves agree, it is the plain peak.
    same = np.array([[0.3, 0.9], [0.1, 0.7]])
    assert cross_fitted_peak(same) == pytest.approx(0.8)


def pool(seed: int, members: int = 3):
    """8 problems x 16 samples, problem p with 2 + p % 4 right samples; each member a noisy
    view of correctness, one member (the last) overrating one wrong sample per problem."""
    rng = np.random.default_rng(seed)
    correct = np.zeros((8, 16), bool)
    for p in range(8):
        correct[p, rng.permutation(16)[: 2 + p % 4]] = True
    logits = correct[None] * 2.0 + rng.normal(0, 1, (members, 8, 16))
    wrong = np.argmin(correct, axis=1)  # a wrong sample of each problem
    logits[-1, np.arange(8), wrong] = 20.0
    return correct, 1 / (1 + np.exp(-logits))


def test_worst_case_discounts_a_member_that_overrates_and_single_is_the_members_mean():
    correct, probabilities = pool(0)
    table = seed_table(correct, probabilities, NS, uwo_penalty=1.0)
    members = [seed_table(correct, probabilities[[k, k]], NS, 0.0)["mean"] for k in range(3)]
    for n in map(str, NS):
        single = np.mean([m["accuracy"][n] for m in members])
        assert table["single"]["accuracy"][n] == pytest.approx(single)
        assert table["wco"]["accuracy"][n] <= table["oracle"]["accuracy"][n] + 1e-12
    # The overrated wrong sample is picked by the mean at large n, by WCO far less often.
    assert table["wco"]["accuracy"]["8"] > table["mean"]["accuracy"]["8"]
    for name in table:
        assert table[name]["loss_from_peak"] == pytest.approx(
            table[name]["peak"] - table[name]["accuracy"]["8"]
        )


def test_differences_from_a_single_member_are_paired_within_seeds():
    tables = {str(s): seed_table(*pool(s), NS, uwo_penalty=1.0) for s in range(4)}
    combined = aggregate(tables, NS)
    diffs = [t["wco"]["accuracy"]["8"] - t["single"]["accuracy"]["8"] for t in tables.values()]
    mean, half = combined["versus_single"]["wco"]["accuracy"]["8"]
    assert mean == pytest.approx(np.mean(diffs)) and half > 0


@pytest.mark.parametrize("key", ["eval.max_new_tokens", "stages.member.labels.max_new_tokens"])
def test_too_few_new_tokens_for_the_solutions_is_refused_before_anything_runs(key, tmp_path):
    config = preset_config(config_module, **{key: 5})
    with pytest.raises(ValueError, match=rf"{key}=5: the task's solutions"):
        rm_ensembles.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_ensemble_of_one_is_refused(tmp_path):
    config = preset_config(config_module, **{"ensemble.size": 1})
    with pytest.raises(ValueError, match=r"ensemble.size=1: an ensemble needs 2 members"):
        rm_ensembles.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
