"""The frontier arithmetic of experiments/dpo_frontier.py on hand-computed cases, and its run
plan (alignax/frontier_runs.py); the experiment end to end is the `dpo_frontier_run` fixture of
test_notebooks.py."""

import numpy as np
import pytest

from alignax import frontier_runs
from alignax.analysis.frontier import (
    at_kl,
    comparisons,
    difference_intervals,
    difference_table,
    dominance,
    endings,
    first_crossing,
    frontier_at,
    frontier_vertices,
    matched_kl_gold,
    method_frontiers,
    peak_and_final,
    turnover,
    upper_envelope,
)
from alignax.analysis.stats import mean_interval
from configs import dpo_frontier as config_module


def test_upper_envelope_drops_points_under_a_chord():
    # (1, 0.4) lies under the chord from (0, 0) to (2, 1) (0.5 there): not a vertex. (3, 0.9)
    # is under no chord: the envelope falls after (2, 1).
    x, y = upper_envelope([0, 1, 2, 3], [0.0, 0.4, 1.0, 0.9])
    np.testing.assert_allclose(x, [0, 2, 3])
    np.testing.assert_allclose(y, [0.0, 1.0, 0.9])


def test_upper_envelope_keeps_the_best_of_equal_kl_and_clips_negative_kl():
    # Two points at KL 1: only the higher one; KL -0.2 (Monte Carlo noise) counts as 0.
    x, y = upper_envelope([-0.2, 1, 1, 4], [0.1, 0.2, 0.7, 1.0])
    np.testing.assert_allclose(x, [0, 1, 4])
    np.testing.assert_allclose(y, [0.1, 0.7, 1.0])


def test_upper_envelope_is_concave_and_above_every_point():
    rng = np.random.default_rng(0)
    kl, gold = rng.uniform(0, 10, 40), rng.normal(size=40)
    x, y = upper_envelope(kl, gold)
    slopes = np.diff(y) / np.diff(x)
    assert np.all(np.diff(slopes) < 0)  # strictly decreasing slopes: concave
    assert np.all(np.interp(kl, x, y) >= gold - 1e-12)


def test_frontier_at_interpolates_then_keeps_the_peak():
    # Envelope (0, 0) - (2, 1) - (3, 0.9): rising slope 1/2, then falling.
    kl, gold = [0, 1, 2, 3], [0.0, 0.4, 1.0, 0.9]
    values = frontier_at(kl, gold, [0.5, 1.0, 2.0, 2.5, 8.0])
    # Within 2.5 or 8 nats the best is the peak, 1.0, not the envelope's 0.95 at 2.5.
    np.testing.assert_allclose(values, [0.25, 0.5, 1.0, 1.0, 1.0])


def test_frontier_at_is_undefined_below_the_smallest_kl():
    values = frontier_at([1.0, 2.0], [0.0, 1.0], [0.5, 1.5])
    assert np.isnan(values[0]) and values[1] == pytest.approx(0.5)


def test_frontier_of_a_single_point_is_that_point_within_any_larger_budget():
    np.testing.assert_allclose(frontier_at([0.0], [0.3], [0.0, 5.0]), [0.3, 0.3])


def test_difference_intervals_are_paired_by_seed():
    # The seeds shift both methods alike: the difference is exactly 0.1 with no spread.
    first = [[1.1, 2.1], [5.1, 0.1], [-3.9, 4.1]]
    second = [[1.0, 2.0], [5.0, 0.0], [-4.0, 4.0]]
    for mean, half in difference_intervals(first, second):
        assert mean == pytest.approx(0.1) and half == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "differences, verdict",
    [
        # Three seeds, two budgets: per-seed first - second.
        ([[0.5, 0.3], [0.5, 0.2], [0.5, 0.1]], "first"),  # superior at one, non-inferior at all
        ([[-0.5, -0.3], [-0.5, -0.2], [-0.5, -0.1]], "second"),
        ([[0.5, -0.5], [0.5, -0.5], [0.5, -0.5]], "cross"),
        # Superior at the first budget, but the second's interval reaches below -0.1.
        ([[0.5, 0.3], [0.5, -0.2], [0.5, 0.1]], "none"),
        # Ahead at both, never significant: the spread is too wide.
        ([[0.5, 0.4], [-0.1, -0.2], [0.4, 0.5]], "none"),
        ([[0.3, 0.1]], "none"),  # one seed: no interval
        ([[], [], []], "none"),  # no budget where both are defined
    ],
)
def test_dominance_rule(differences, verdict):
    assert dominance(differences, margin=0.1) == verdict


def test_dominance_corrects_for_the_number_of_budgets():
    """A difference above 0 at 95% (t = 5.3 on 2 df) but not at 97.5% (t needs 6.2): 'first'
    with one budget, 'none' with a second budget beside it (Bonferroni: 1 - 0.05/2)."""
    significant = np.array([0.15, 0.25, 0.30])
    for confidence, above in ((0.95, True), (0.975, False)):
        mean, half = mean_interval(significant, confidence)
        assert (mean - half > 0) is above
    one = significant[:, None]
    assert dominance(one, margin=0.1) == "first"
    assert dominance(np.concatenate([one, np.zeros((3, 1))], axis=1), margin=0.1) == "none"


def test_peak_and_final_take_the_first_highest_gold_and_the_last_point():
    points = [{"step": s, "gold": g} for s, g in [(4, 0.1), (8, 0.5), (12, 0.5), (16, 0.2)]]
    peak, final = peak_and_final(points)
    assert peak["step"] == 8 and final["step"] == 16


def test_plan_has_every_method_and_one_long_dpo_run():
    config = config_module.get_config("default")
    runs = frontier_runs.runs_of(config)
    assert set(frontier_runs.method_runs(runs)) == {
        "DPO",
        "IPO",
        "cDPO",
        "SimPO",
        "ORPO",
        "preferred-FT",
        "KTO",
        "PPO (RM)",
        "PPO (gold)",
    }
    long = [r for r in runs if r.frontier_steps is not None]
    assert [r.name for r in long] == [f"dpo_beta{config.overoptimization.beta:g}"]
    assert dict(long[0].overrides)["train.steps"] == config.overoptimization.steps
    assert long[0].frontier_steps == config.offline.train.steps
    ppo_runs = [r for r in runs if r.runner == "ppo"]
    assert len(ppo_runs) == len(config.rl.kl_targets) * len(config.rl.reward_sources)
    # At the equal tuning budget every method keeps one run: DPO its chosen beta, PPO its target.
    equal = frontier_runs.method_runs([r for r in runs if r.equal_budget])
    assert set(equal) == set(frontier_runs.method_runs(runs))
    assert all(len(names) == 1 for names in equal.values())
    assert equal["DPO"] == [f"dpo_beta{config.equal_budget.dpo_beta:g}"]
    assert equal["PPO (RM)"] == [f"ppo_model_kl{config.equal_budget.ppo_kl_target:g}"]
    frontier_runs.check_same_data(config)  # the default's KTO and PPO match the offline template


def test_run_config_links_the_seed_stages(tmp_path):
    config = config_module.get_config("runlocal")
    runs = {r.name: r for r in frontier_runs.runs_of(config)}
    simpo = frontier_runs.run_config(config, runs["simpo"], 3, tmp_path)
    assert simpo.seed == 3 and simpo.loss.name == "simpo"
    assert simpo.init_from == simpo.labels.policy_from == str(tmp_path / "sft")
    gold = frontier_runs.run_config(config, runs["ppo_gold_kl2"], 3, tmp_path)
    assert gold.rewards.source == "gold" and gold.rewards.reward_model_from == ""
    model = frontier_runs.run_config(config, runs["ppo_model_kl2"], 3, tmp_path)
    assert model.rewards.reward_model_from == str(tmp_path / "reward_model")
    assert model.ppo.kl_target == 2.0


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="known: default, runlocal"):
        config_module.get_config("nope")
    config = config_module.get_config("runlocal")
    with config.unlocked():
        config.overoptimization.beta = 0.3
    with pytest.raises(ValueError, match="overoptimization.beta"):
        frontier_runs.runs_of(config)
    config = config_module.get_config("runlocal")
    config.equal_budget.dpo_beta = 0.5
    with pytest.raises(ValueError, match=r"equal_budget\.dpo_beta=0\.5 must be one of"):
        frontier_runs.runs_of(config)
    config = config_module.get_config("runlocal")
    config.kto.train.steps = 3
    with pytest.raises(ValueError, match="kto.train.steps"):
        frontier_runs.check_same_data(config)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("rl.ppo.train.checkpoint_every", 4, r"rl.ppo.train.checkpoint_every=4 must equal"),
        (
            "offline.train.keep_checkpoints",
            3,
            r"offline.train.keep_checkpoints=3 keeps fewer than the 4",
        ),
    ],
)
def test_every_evaluated_checkpoint_must_be_kept(tmp_path, key, value, message):
    """The vertices and the peak are measured again from their checkpoints: an override that
    would drop one is refused naming the key, not overwritten."""
    config = config_module.get_config("runlocal")
    *sections, leaf = key.split(".")
    node = config
    for section in sections:
        node = node[section]
    node[leaf] = value
    with pytest.raises(ValueError, match=message):
        for run in frontier_runs.runs_of(config):
            frontier_runs.run_config(config, run, 0, tmp_path)


def test_turnover_over_seeds_and_within_each_seed():
    def seed(drop, se):
        return {"overoptimization": {"reevaluated": {"drop": drop, "drop_se": se}}}

    # Drops 0.5, 0.1, 0.2: the t-interval over 3 seeds (t = 4.30) contains 0; within seeds, the
    # first two lie above 0 by more than 1.96 SE, the third (0.2 - 1.96 * 0.15 < 0) does not.
    turn = turnover({0: seed(0.5, 0.05), 1: seed(0.1, 0.03), 2: seed(0.2, 0.15)})
    assert turn["drop"] == pytest.approx(0.8 / 3)
    half = 4.302653 * np.std([0.5, 0.1, 0.2], ddof=1) / np.sqrt(3)
    assert turn["drop_interval"] == pytest.approx(half, rel=1e-5)
    assert not turn["turns_over"] and turn["seeds_turning_over"] == 2
    same = turnover({k: seed(0.3 + 0.01 * k, 0.01) for k in range(3)})
    assert same["turns_over"] and same["seeds_turning_over"] == 3


def test_comparisons_use_every_budget_where_both_frontiers_are_defined():
    # Two seeds, three budgets. B is undefined (nan) at the first budget in one seed, and its
    # runs never reached the last one (its value there is its best within it): that budget is
    # compared, the first is not.
    a = {"budgets": [1, 2, 4], "per_seed": [[1.0, 1.2, 1.5], [1.1, 1.3, 1.6]]}
    b = {"budgets": [1, 2, 4], "per_seed": [[np.nan, 1.0, 1.0], [0.9, 1.1, 1.1]]}
    pairs = comparisons({"A": a, "B": b}, margin=0.1)
    assert pairs["A vs B"]["budgets_compared"] == [2, 4]
    assert pairs["A vs B"]["verdict"] == "first" and pairs["B vs A"]["verdict"] == "second"
    rows = difference_table({"A": a, "B": b}, pairs, "A")
    assert rows[-1].startswith("| B | - | 0.20 ± 0.00 | 0.50 ± 0.00 | A dominates")


def test_method_frontiers_pool_a_methods_runs_and_start_at_the_sft_point():
    """One method of two runs over two seeds; each seed's frontier is the envelope of both runs'
    points and (0, the start's gold); endings average the runs' last points, then the seeds."""
    seeds = [
        {"a": [{"kl": 2.0, "gold": 1.0}], "b": [{"kl": 4.0, "gold": 1.2}]},
        {"a": [{"kl": 2.0, "gold": 0.6}], "b": [{"kl": 1.0, "gold": 0.8}]},
    ]
    front = method_frontiers({"M": ["a", "b"]}, seeds, [0.0, 0.4], budgets=[1, 2, 8])["M"]
    # Seed 0: envelope (0, 0), (2, 1.0), (4, 1.2): 0.5 at KL 1, 1.0 at 2, 1.2 within 8.
    # Seed 1: (0, 0.4), (1, 0.8), then (2, 0.6) falls: 0.8 at 1, 0.8 within 2 and 8.
    np.testing.assert_allclose(front["per_seed"], [[0.5, 1.0, 1.2], [0.8, 0.8, 0.8]])
    assert front["reached"] == [True, True, False]
    assert front["interval"][0] == mean_interval([0.5, 0.8])
    ends = endings({"M": ["a", "b"]}, seeds, ("kl", "gold"))["M"]
    assert ends["kl"] == mean_interval([3.0, 1.5]) and ends["gold"][0] == pytest.approx(0.9)


def test_frontier_vertices_are_the_envelope_points_the_budgets_read():
    """Points (KL, gold) from (0, 0.1): (1, 0.3) lies under the chord from (0.5, 0.6) to
    (2, 1.0); (3, 1.2) is the first vertex past the largest budget 2, (5, 1.3) is not read;
    (-0.1, 0.2) counts at KL 0 and, above the start, is a vertex."""
    points = [
        {"kl": k, "gold": g, "step": i}
        for i, (k, g) in enumerate(
            [(-0.1, 0.2), (0.5, 0.6), (1, 0.3), (2, 1.0), (3, 1.2), (5, 1.3)]
        )
    ]
    chosen = frontier_vertices(points, 0.1, budgets=[1, 2])
    assert [p["step"] for p in chosen] == [0, 1, 3, 4]
    # Past the last point: every vertex is read.
    assert [p["step"] for p in frontier_vertices(points, 0.1, budgets=[8])] == [0, 1, 3, 4, 5]


def test_a_run_at_a_kl_budget_is_its_first_crossing_read_linearly():
    points = [
        {"step": 0, "kl": 0.0, "objectives": [1.0, 0.0], "gold_reward": 0.0},
        {"step": 50, "kl": 2.0, "objectives": [2.0, 1.0], "gold_reward": 1.0},
        {"step": 100, "kl": 6.0, "objectives": [4.0, 0.0], "gold_reward": 3.0},
        {"step": 150, "kl": 3.0, "objectives": [0.0, 0.0], "gold_reward": 0.0},  # KL falls
    ]
    at = at_kl(points, 4.0)  # halfway from step 50 to 100, not the later crossing
    assert at == {"step": 75.0, "objectives": [3.0, 0.5], "gold_reward": 2.0}
    assert at_kl(points, 2.0)["step"] == 50
    assert at_kl(points, 6.5) is None


def test_two_runs_at_matched_kl_are_read_at_the_smaller_final_kl():
    """PPO ends at KL 4, DPO at 10: PPO is read at its end (though its path passed KL 4 before,
    at gold 1.5), DPO between its checkpoints at 2 and 6 (its first crossing); a budget at or
    below 0 reads the other run's start."""
    paths = {
        "ppo": [
            {"kl": 0.0, "gold": 0.0},
            {"kl": 5.0, "gold": 1.5},
            {"kl": 4.0, "gold": 1.1},
        ],
        "dpo": [
            {"kl": 0.0, "gold": 0.0},
            {"kl": 2.0, "gold": 1.0},
            {"kl": 6.0, "gold": 2.0},
            {"kl": 10.0, "gold": 2.2},
        ],
    }
    assert matched_kl_gold(paths) == pytest.approx({"kl": 4.0, "ppo": 1.1, "dpo": 1.5})
    assert first_crossing([0.0, 2.0, 6.0, 3.0], 4.0) == (1, 0.5)
    assert first_crossing([0.0, 2.0], 2.5) is None
    noisy = {"ppo": [{"kl": 0.0, "gold": 0.3}, {"kl": -0.1, "gold": 0.2}], "dpo": paths["dpo"]}
    assert matched_kl_gold(noisy) == {"kl": -0.1, "ppo": 0.2, "dpo": 0.0}
