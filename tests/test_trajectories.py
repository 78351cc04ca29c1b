"""alignax.analysis.trajectories: methods compared at equal KL along their runs."""

import numpy as np
import pytest

from alignax.analysis.trajectories import at_kl_budgets, budget_differences, defined_interval


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
