"""Functional-form fits (Gao et al. 2022), intervals, and the studies' policy table: exact
recovery, peaks, t-intervals, length-controlled gold by hand."""

import numpy as np
import pytest

from alignax.analysis.fits import fit_form
from alignax.analysis.policy_eval import length_controlled_gold, versus_sft
from alignax.analysis.stats import mean_interval, standard_error
from alignax.rl import PPOConfig, default_ppo_config, describe_reward


@pytest.mark.parametrize("form", ["bon", "rl"])
def test_fit_recovers_the_coefficients_of_its_own_form(form):
    d = np.linspace(0.1, 3.0, 12)
    truth = {"bon": d * (1.3 - 0.4 * d), "rl": d * (1.3 - 0.4 * np.log(d))}[form]
    fit = fit_form(d, truth, form)
    assert fit.alpha == pytest.approx(1.3) and fit.beta == pytest.approx(0.4)
    assert fit.r2 == pytest.approx(1.0)
    np.testing.assert_allclose(fit.predict(d), truth, atol=1e-12)


def test_peaks_are_where_the_derivative_vanishes():
    bon = fit_form(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.0, -1.5]), "bon")
    # 0.5 = a - b, 0 = 2a - 4b  ->  a = 1, b = 0.5; peak at d = a / 2b = 1, R = 0.5.
    assert (bon.alpha, bon.beta) == pytest.approx((1.0, 0.5))
    assert bon.peak() == pytest.approx((1.0, 0.5))
    rl = fit_form(
        np.array([0.5, 1.0, 2.0]), np.array([0.5, 1.0, 2.0]) * (2 - np.log([0.5, 1, 2])), "rl"
    )
    d_star, _ = rl.peak()
    assert d_star == pytest.approx(np.exp(2 / 1 - 1))  # alpha - beta (log d + 1) = 0


def test_a_worse_form_has_lower_r2():
    d = np.linspace(0.2, 4, 20)
    quadratic = d * (1.0 - 0.3 * d)
    assert fit_form(d, quadratic, "bon").r2 > fit_form(d, quadratic, "rl").r2


def test_standard_error_by_hand():
    # 1, 2, 3, 4: sample variance 5/3, so SE = sqrt(5/3) / 2.
    assert standard_error([1.0, 2.0, 3.0, 4.0]) == pytest.approx(np.sqrt(5 / 3) / 2, rel=1e-12)


def test_mean_interval_is_the_student_t_interval():
    mean, half = mean_interval([1.0, 2.0, 3.0])
    # sd 1, sem 1/sqrt(3), t(0.975, 2) = 4.3027
    assert mean == 2.0 and half == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert np.isnan(mean_interval([1.0])[1])


def _policy(gold, length, ended=None):
    gold, length = np.asarray(gold, float), np.asarray(length, float)
    return {
        "gold": gold,
        "length": length,
        "kl": np.zeros_like(gold),
        "ended_with_eos": np.ones_like(gold) if ended is None else np.asarray(ended, float),
    }


def test_length_controlled_gold_removes_a_pure_length_effect():
    """Gold = intercept + 0.5 * length in every policy: adjusted to SFT's mean length (10),
    each policy keeps only its intercept's difference."""
    sft = _policy(1.0 + 0.5 * np.array([8, 10, 12]), [8, 10, 12])
    longer = _policy(1.0 + 0.5 * np.array([18, 20, 22]), [18, 20, 22])
    better = _policy(2.0 + 0.5 * np.array([9, 11, 13]), [9, 11, 13])
    out = length_controlled_gold({"sft": sft, "longer": longer, "better": better})
    assert out == pytest.approx({"sft": 6.0, "longer": 6.0, "better": 7.0})
    # The raw means: the longer policy looks 5 better than SFT.
    assert longer["gold"].mean() - sft["gold"].mean() == pytest.approx(5.0)


def test_length_controlled_gold_pools_the_slope_within_policies():
    """Slopes 1 (within a) and 0 (within b) pool to (1*2 + 0*2) / (2 + 2) = 0.5 by hand; a
    difference between policies' means does not enter the slope."""
    a = _policy([0.0, 2.0], [0.0, 2.0])  # within-policy slope 1, mean length 1
    b = _policy([5.0, 5.0], [9.0, 11.0])  # slope 0, mean length 10
    out = length_controlled_gold({"a": a, "b": b}, reference="a")
    assert out["a"] == pytest.approx(1.0)
    assert out["b"] == pytest.approx(5.0 - 0.5 * (10.0 - 1.0))


def test_length_controlled_gold_without_length_variation_is_the_mean():
    out = length_controlled_gold({"sft": _policy([1.0, 3.0], [5, 5]), "x": _policy([4.0], [7])})
    assert out == pytest.approx({"sft": 2.0, "x": 4.0})


def test_versus_sft_rows():
    sft = _policy([0.0, 1.0, 2.0, 3.0], [4, 4, 4, 4])
    ppo = _policy([1.0, 1.0, 2.0, 0.0], [4, 4, 4, 8], ended=[1, 1, 1, 0])
    rows = versus_sft({"sft": sft, "ppo": ppo})
    assert rows["sft"]["win_rate_vs_sft"] == 0.5
    assert rows["ppo"]["win_rate_vs_sft"] == pytest.approx((1 + 0.5 + 0.5 + 0) / 4)
    assert rows["ppo"]["ended_with_eos"] == 0.75
    assert rows["ppo"]["response_length"] == 5.0
    assert rows["ppo"]["gold_reward"] == 1.0


def test_ppo_reward_shaping_is_off_by_default_and_reported_when_on():
    section = default_ppo_config()
    assert PPOConfig.from_config(section).missing_eos_penalty == 0.0
    assert "no other shaping" in describe_reward(section)
    section.missing_eos_penalty = 1.5
    assert "loses 1.5" in describe_reward(section)
