"""The decision rules of KL-penalised RL (alignax/analysis/kl_penalty.py) on hand-computed
numbers: the hump over seeds, the rise and fall judged on fresh prompts, the adaptive
controller's tracking and the PPO-ptx trade-off."""

import numpy as np
import pytest

from alignax.analysis.kl_penalty import (
    hump_over_seeds,
    kl_tracking,
    ptx_tradeoff,
    rise_and_fall,
    strictly_decreasing,
    within,
)
from alignax.analysis.stats import mean_interval


def test_hump_finds_the_peak_and_the_paired_drop():
    # Two seeds; the mean curve is (0, 1, 2, 1): peak at index 2, drops 1.5 and 0.5 -> mean 1.0,
    # half-width t_{0.975, 1} * std([1.5, 0.5], ddof=1) / sqrt(2) = 12.706 * 0.5.
    gold = np.array([[0.0, 1.0, 2.5, 1.0], [0.0, 1.0, 1.5, 1.0]])
    h = hump_over_seeds(gold)
    assert h["peak_index"] == 2 and h["interior_peak"]
    assert h["rise"] == pytest.approx(2.0)
    assert h["drop"] == pytest.approx(1.0)
    assert h["drop_ci"] == pytest.approx(12.7062 * 0.5, rel=1e-4)
    assert not h["falls"]  # the interval includes 0
    rising = hump_over_seeds(np.array([[0.0, 1.0, 2.0], [0.0, 1.1, 2.1]]))
    assert not rising["interior_peak"] and rising["drop"] == 0.0 and not rising["falls"]
    consistent = hump_over_seeds(np.array([[0.0, 2.0, 1.0], [0.0, 2.0, 1.1], [0, 2.1, 1.0]]))
    assert consistent["falls"] and consistent["seeds_falling"] is None


def test_hump_counts_the_seeds_whose_own_drop_is_significant():
    # Drops 1.5 and 0.5 from the peak; with SEs 0.3 at both points the bar is
    # 1.96 * sqrt(0.18) = 0.83: only the first seed falls by more.
    gold = np.array([[0.0, 1.0, 2.5, 1.0], [0.0, 1.0, 1.5, 1.0]])
    assert hump_over_seeds(gold, np.full_like(gold, 0.3))["seeds_falling"] == 1
    assert hump_over_seeds(gold, np.full_like(gold, 0.1))["seeds_falling"] == 2


def test_a1_chooses_the_peak_on_the_evaluations_and_judges_it_on_fresh_prompts():
    """The peak step comes from the evaluation curves; the verdict from the fresh gold: a peak
    that the evaluations overrate (fresh gold no higher than at the end) fails."""

    def runs(curves):
        return [
            [{"step": 10 * i, "gold": g, "gold_se": 0.1, "proxy": i} for i, g in enumerate(c)]
            for c in curves
        ]

    evaluated = runs([[0.0, 1.0, 0.2], [0.0, 1.2, 0.3], [0.1, 0.9, 0.2]])
    asked = []

    def fresh(rise, drop):
        def gold(steps):
            asked.append(steps)
            sft = np.zeros(4)
            return [
                {"sft": sft, "peak": sft + rise + k, "final": sft + rise - drop}
                for k in (0.0, 0.1, 0.2)
            ]

        return gold

    a1 = rise_and_fall(evaluated, fresh(0.5, 0.4))
    assert asked == [{"peak": 10, "final": 20}] and a1["peak_step"] == 10 and a1["final_step"] == 20
    assert a1["fresh_rise"] == pytest.approx(0.6) and a1["fresh_drop"] == pytest.approx(0.5)
    assert a1["fresh_drop_ci"] == pytest.approx(mean_interval([0.4, 0.5, 0.6])[1])
    assert a1["pass"]
    assert not rise_and_fall(evaluated, fresh(0.5, -0.3))["pass"]  # no fall
    assert not rise_and_fall(evaluated, fresh(-0.5, 0.4))["pass"]  # no rise
    # No interior peak: nothing to evaluate again, and it fails.
    rising = rise_and_fall(runs([[0.0, 0.5, 1.0], [0.0, 0.6, 1.1]]), None)
    assert not rising["pass"] and "fresh_drop" not in rising


def test_monotonicity_and_tolerance():
    assert strictly_decreasing([9.0, 4.0, 1.0, 0.5])
    assert not strictly_decreasing([9.0, 4.0, 4.0])
    assert within(4.8, 4.0, 0.2) and within(3.2, 4.0, 0.2)
    assert not within(5.04, 4.0, 0.2)  # 26% over


def test_ptx_tradeoff_hand_computed():
    """Per-seed values, two seeds; the tax cut from the means, the win rate lost paired by seed
    with its t-interval (one degree of freedom: t = 12.706)."""
    tax = {0.0: [0.18, 0.22], 0.5: [0.14, 0.16], 2.0: [0.07, 0.09], 8.0: [0.02, 0.02]}
    win = {0.0: [0.80, 0.80], 0.5: [0.79, 0.79], 2.0: [0.77, 0.77], 8.0: [0.70, 0.70]}
    out = ptx_tradeoff(tax, win, min_tax_cut=0.5, max_win_rate_drop=0.05)
    rows = out["by_gamma"]
    assert rows[0.5]["tax_cut"] == pytest.approx(0.25) and not rows[0.5]["ok"]
    assert rows[2.0]["tax_cut"] == pytest.approx(0.6)
    assert rows[2.0]["win_rate_drop"] == pytest.approx(0.03) and rows[2.0]["ok"]
    assert rows[2.0]["win_rate_drop_half_width"] == pytest.approx(0.0)
    assert rows[8.0]["tax_cut"] == pytest.approx(0.9) and not rows[8.0]["ok"]  # 10 points
    assert out["pass"]
    # The same mean loss, spread over seeds: 0.03 ± 12.706 * 0.01, beyond 5 points.
    spread = {**win, 2.0: [0.78, 0.76]}
    noisy = ptx_tradeoff(tax, spread, min_tax_cut=0.5, max_win_rate_drop=0.05)
    assert noisy["by_gamma"][2.0]["win_rate_drop"] == pytest.approx(0.03)
    assert noisy["by_gamma"][2.0]["win_rate_drop_half_width"] == pytest.approx(0.127062, 1e-4)
    assert not noisy["pass"]
    one_seed = {g: v[:1] for g, v in win.items()}
    assert not ptx_tradeoff(
        {g: v[:1] for g, v in tax.items()}, one_seed, min_tax_cut=0.5, max_win_rate_drop=0.05
    )["pass"]  # no interval with one seed
    strict = ptx_tradeoff(tax, win, min_tax_cut=0.7, max_win_rate_drop=0.05)
    assert not strict["pass"]
    with pytest.raises(ValueError, match="no alignment tax"):
        ptx_tradeoff({0.0: [-0.01], 2.0: [0.0]}, win, min_tax_cut=0.5, max_win_rate_drop=1)


def test_kl_tracking_reads_the_rollouts_past_warm_up_and_the_held_out_kl():
    """Two seeds of rollout KL at steps 0..9; warm-up 0.5 of the last step (9) leaves steps 5..9:
    means 4.0 and 5.0, so 4.5 against target 4 (+12.5%); held-out 3.0 (-25%)."""
    curves = [
        [{"step": i, "kl": 100.0 if i <= 4 else 4.0} for i in range(10)],
        [{"step": i, "kl": 100.0 if i <= 4 else 5.0} for i in range(10)],
    ]
    out = kl_tracking(curves, 3.0, 4.0, tolerance=0.2, warmup_fraction=0.5)
    assert out["rollout_kl_after_warmup"] == pytest.approx(4.5)
    assert out["rollout_error"] == pytest.approx(0.125)
    assert out["held_out_error"] == pytest.approx(-0.25) and not out["ok"]
    assert kl_tracking(curves, 3.5, 4.0, tolerance=0.2, warmup_fraction=0.5)["ok"]
    # Warm-up over the whole run but the last step: only step 9 counts.
    late = kl_tracking(curves, 4.0, 4.0, tolerance=0.2, warmup_fraction=8.5 / 9)
    assert late["rollout_kl_after_warmup"] == pytest.approx(4.5)
