"""alignax.analysis.trajectories: methods compared at equal KL along their runs."""

import numpy as np
import pytest

from alignax.analysis.trajectories import (
    at_kl_budgets,
    budget_differences,
    defined_interval,
    peak_and_fall,
)


def test_methods_are_read_at_equal_kl_along_their_runs():
    """Each method's gold and length at a KL budget lie on the line through its runs' points
    and the SFT policy's, sorted by KL; a budget beyond its largest KL is undefined, and the
    paired differences use only the seeds where both methods reach it."""

    def row(kl, gold, length):
        return {"kl_to_sft": kl, "gold_reward": gold, "response_length": length}

    table = {
        "sft": row(0.0, 1.0, 18.0),
        "a_beta1": row(4.0, 2.0, 26.0),  # unsorted on purpose
        "a_beta2": row(2.0, 1.5, 20.0),
        "b_beta1": row(1.0, 0.0, 30.0),
    }
    got = at_kl_budgets(table, {"a": ["a_beta1", "a_beta2"], "b": ["b_beta1"]}, [1.0, 3.0])
    assert got["a"]["gold"] == pytest.approx([1.25, 1.75])
    assert got["a"]["length"] == pytest.approx([19.0, 23.0])
    assert got["b"]["gold"][0] == pytest.approx(0.0) and np.isnan(got["b"]["gold"][1])
    other = {m: {k: [v + 1.0 for v in values] for k, values in d.items()} for m, d in got.items()}
    other["b"]["gold"] = [0.5, 2.0]  # this seed reaches KL 3 with b
    d = budget_differences([got, other], {"a - b": ("a", "b")}, [1.0, 3.0])
    mean, _, count = d["a - b"]["gold"][0]
    assert mean == pytest.approx((1.25 - 0.0 + 2.25 - 0.5) / 2) and count == 2
    mean, half, count = d["a - b"]["gold"][1]
    assert count == 1 and mean == pytest.approx(2.75 - 2.0) and np.isnan(half)
    assert defined_interval([np.nan, np.nan])[2] == 0


def test_a_steady_rise_and_fall_gives_its_peak_and_fall():
    gold_CxP = np.repeat([[0.0], [2.0], [1.5], [0.5]], 6, axis=1)  # start, peak, end
    got = peak_and_fall(gold_CxP)
    assert got == pytest.approx({"peak": 2.0, "fall": 1.5})


def test_the_peak_is_chosen_on_one_half_and_read_on_the_other():
    """Even prompts peak at row 1 and odd ones at row 2: each half's choice is read where it is
    not the best, so the cross-fitted peak lies below both halves' own maxima."""
    gold_CxP = np.zeros((4, 4))
    gold_CxP[1, 0::2], gold_CxP[1, 1::2] = 3.0, 1.0
    gold_CxP[2, 0::2], gold_CxP[2, 1::2] = 1.0, 3.0
    got = peak_and_fall(gold_CxP)
    assert got["peak"] == pytest.approx(1.0)  # each half's choice read on the other: 1
    assert got["fall"] == pytest.approx(1.0)  # ... less the end's 0
    # A run that only falls peaks at its start.
    flat = peak_and_fall(np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert flat == pytest.approx({"peak": 1.0, "fall": 1.0})
