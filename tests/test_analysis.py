"""Functional-form fits (Gao et al. 2022) and intervals: exact recovery, peaks, t-intervals."""

import numpy as np
import pytest

from alignax.analysis.fits import fit_form
from alignax.analysis.stats import mean_interval, standard_error


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
