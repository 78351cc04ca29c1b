"""The InstructGPT experiment's pure parts: the run plan, the policy sizes, curves read back from
metrics, and the criteria on hand-computed numbers. (The end-to-end run is the notebook fixture
in tests/test_notebooks.py.)"""

import json
import math

import numpy as np
import pytest

from alignax.analysis.stats import mean_interval
from alignax.study import RLHF_STAGES
from alignax.workflows import ppo
from configs import instructgpt as config_module
from experiments import instructgpt


@pytest.fixture(scope="module")
def config():
    return config_module.get_config("default")


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="default, runlocal"):
        config_module.get_config("full")


def test_plan_covers_the_sweeps_once_and_the_size_axis(config):
    plan = instructgpt.ppo_plan(config)
    sweep = [r for r in plan if r["width"] == config.sweep_width]
    names = [r["name"] for r in sweep]
    assert names == [
        "beta0",
        "beta0.01",
        "beta0.05",
        "beta0.2",
        "target2",
        "target4",
        "target8",
        "target4_ptx0.02",
        "target4_ptx0.1",
        "target4_ptx0.5",
        "target4_ptx2",
        "target4_ptx8",
    ]
    by_name = {r["name"]: r["ppo"] for r in sweep}
    assert by_name["beta0.05"] == {"kl_control": "fixed", "ptx_coef": 0.0, "kl_coef": 0.05}
    # ptx runs are their base run (the adaptive target 4) plus gamma: gamma 0 IS the base run.
    assert by_name["target4_ptx2"] == {**by_name["target4"], "ptx_coef": 2.0}
    others = [(r["width"], r["name"]) for r in plan if r["width"] != config.sweep_width]
    assert others == [
        (32, "target4"),
        (32, "target4_ptx0.1"),
        (128, "target4"),
        (128, "target4_ptx0.1"),
    ]


def test_size_axis_ptx_coef_must_be_swept(config):
    bad = config.copy_and_resolve_references()
    bad.sweep.size_axis_ptx_coef = 0.3
    with pytest.raises(ValueError, match="size_axis_ptx_coef"):
        instructgpt.ppo_plan(bad)


def test_ptx_base_must_be_a_run(config):
    bad = config.copy_and_resolve_references()
    bad.sweep.ptx_base = "target3"
    with pytest.raises(ValueError, match=r"sweep\.ptx_base"):
        instructgpt.ppo_plan(bad)


def test_policy_model_keeps_head_dimension_and_mlp_ratio(config):
    small = instructgpt.policy_model(config.model, 32)
    large = instructgpt.policy_model(config.model, 128)
    head_dim = config.model.d_model // config.model.num_heads
    for m, width in ((small, 32), (large, 128)):
        assert m.d_model == width and m.d_model // m.num_heads == head_dim
        assert m.mlp_dim * config.model.d_model == config.model.mlp_dim * width
    assert instructgpt.policy_model(config.model, 64).to_dict() == config.model.to_dict()
    with pytest.raises(ValueError, match="widths"):
        instructgpt.policy_model(config.model, 40)


def test_every_width_trains_its_own_stages_against_the_sweep_widths_reward_model(config, tmp_path):
    """The size axis's wiring, which the one-width smoke run does not reach: the planned stages
    of one seed in order, each at its width, every PPO run from its width's SFT policy and
    scored by the one reward model of the sweep width."""
    sweep = config.sweep_width
    others = [w for w in config.widths if w != sweep]
    assert others  # the default preset has a size axis
    planned = instructgpt.plan(config, 0, tmp_path)
    runs = instructgpt.ppo_plan(config)
    upstream = [f"d{sweep}/pretrain", f"d{sweep}/sft", f"d{sweep}/reward_model"]
    for width in others:
        upstream += [f"d{width}/pretrain", f"d{width}/sft"]
    assert [p.name for p in planned] == upstream + [f"d{r['width']}/ppo/{r['name']}" for r in runs]
    reward_model = tmp_path / f"d{sweep}" / "reward_model"
    for stage, run in zip(planned[len(upstream) :], runs, strict=True):
        width, c = run["width"], stage.config
        assert stage.kind is ppo.KIND and stage.group == "ppo"
        assert stage.options == {"evaluate_at_start": True}
        assert c.model.d_model == width and c.seed == 0
        assert c.init_from == str(tmp_path / f"d{width}" / "sft")
        assert c.rewards.reward_model_from == str(reward_model)
        assert {k: c.ppo[k] for k in run["ppo"]} == run["ppo"]
    for stage in planned[: len(upstream)]:
        width, kind = stage.name.split("/")
        assert stage.kind is RLHF_STAGES[kind].KIND and stage.group == kind
        if kind != "reward_model":  # the reward model has its own model config
            assert stage.config.model.d_model == int(width.removeprefix("d"))
    # A seed outside size_axis_seeds trains the sweep width only.
    other = config.copy_and_resolve_references()
    other.size_axis_seeds = (0,)
    assert {p.name.split("/")[0] for p in instructgpt.plan(other, 1, tmp_path)} == {f"d{sweep}"}


def test_size_table_and_figure_show_every_width_that_has_all_four_policies(
    config, tmp_path, monkeypatch
):
    """The size axis's analysis, which the one-width smoke run does not reach: one table row and
    one point per policy for every width with base, SFT, PPO and PPO-ptx; a width missing one is
    left out of the table (the figure still shows what it has)."""
    s = config.sweep
    policies = ["base", "sft", s.ptx_base, instructgpt.ptx_name(s.ptx_base, s.size_axis_ptx_coef)]
    widths = sorted(config.widths)
    assert len(widths) == 3
    combined = {
        f"d{w}/{name}": {
            "win_rate_vs_sft": (0.1 * i + w / 1000, 0.01),
            "alignment_tax": (0.001 * w, 0.002),
        }
        for w in widths
        for i, name in enumerate(policies)
    }
    del combined[f"d{widths[0]}/{policies[3]}"]  # the smallest width lacks PPO-ptx
    lines = instructgpt.size_table(config, combined)
    rows = [line for line in lines if line.startswith(f"| {widths[1]} (")]
    params = instructgpt.num_params(config, widths[1]) / 1e3
    tax = f"{0.001 * widths[1]:.3f} ± 0.002"
    assert rows == [
        f"| {widths[1]} ({params:.0f}k) | "
        + " | ".join(f"{0.1 * i + widths[1] / 1000:.2f} ± 0.01" for i in range(4))
        + f" | {tax} / {tax} |"
    ]
    assert [line.split(" (")[0] for line in lines[4:]] == [f"| {w}" for w in widths[1:]]

    drawn = {}

    def record(fig, path):
        (ax,) = fig.axes
        drawn.update({c.get_label(): c.lines[0].get_xydata().tolist() for c in ax.containers})
        return []

    monkeypatch.setattr(instructgpt.plots, "save", record)
    instructgpt.size_figure(config, combined, tmp_path)
    sizes = [instructgpt.num_params(config, w) for w in widths]
    win = {key: r["win_rate_vs_sft"][0] for key, r in combined.items()}
    assert drawn["PPO"] == [[n, win[f"d{w}/{policies[2]}"]] for n, w in zip(sizes, widths)]
    assert drawn["PPO-ptx"] == [
        [n, win[f"d{w}/{policies[3]}"]] for n, w in zip(sizes[1:], widths[1:])
    ]


def test_hump_finds_the_peak_and_the_paired_drop():
    # Two seeds; the mean curve is (0, 1, 2, 1): peak at index 2, drops 1.5 and 0.5 -> mean 1.0,
    # half-width t_{0.975, 1} * std([1.5, 0.5], ddof=1) / sqrt(2) = 12.706 * 0.5.
    gold = np.array([[0.0, 1.0, 2.5, 1.0], [0.0, 1.0, 1.5, 1.0]])
    h = instructgpt.hump(gold)
    assert h["peak_index"] == 2 and h["interior_peak"]
    assert h["rise"] == pytest.approx(2.0)
    assert h["drop"] == pytest.approx(1.0)
    assert h["drop_ci"] == pytest.approx(12.7062 * 0.5, rel=1e-4)
    assert not h["falls"]  # the interval includes 0
    rising = instructgpt.hump(np.array([[0.0, 1.0, 2.0], [0.0, 1.1, 2.1]]))
    assert not rising["interior_peak"] and rising["drop"] == 0.0 and not rising["falls"]
    consistent = instructgpt.hump(np.array([[0.0, 2.0, 1.0], [0.0, 2.0, 1.1], [0, 2.1, 1.0]]))
    assert consistent["falls"] and consistent["seeds_falling"] is None


def test_hump_counts_the_seeds_whose_own_drop_is_significant():
    # Drops 1.5 and 0.5 from the peak; with SEs 0.3 at both points the bar is
    # 1.96 * sqrt(0.18) = 0.83: only the first seed falls by more.
    gold = np.array([[0.0, 1.0, 2.5, 1.0], [0.0, 1.0, 1.5, 1.0]])
    assert instructgpt.hump(gold, np.full_like(gold, 0.3))["seeds_falling"] == 1
    assert instructgpt.hump(gold, np.full_like(gold, 0.1))["seeds_falling"] == 2


def test_a1_chooses_the_peak_on_the_evaluations_and_judges_it_on_fresh_prompts():
    """The peak step comes from the evaluation curves; the verdict from the fresh gold: a peak
    that the evaluations overrate (fresh gold no higher than at the end) fails."""

    def runs(curves):
        return [
            {
                "eval": [
                    {"step": 10 * i, "gold": g, "gold_se": 0.1, "proxy": i} for i, g in enumerate(c)
                ]
            }
            for c in curves
        ]

    evaluated = runs([[0.0, 1.0, 0.2], [0.0, 1.2, 0.3], [0.1, 0.9, 0.2]])
    asked = []

    def fresh(rise, drop):
        def gold(steps):
            asked.append(steps)
            sft = np.zeros(4)
            return [
                {"sft": sft, 10: sft + rise + k, 20: sft + rise - drop} for k in (0.0, 0.1, 0.2)
            ]

        return gold

    a1 = instructgpt.rise_and_fall(evaluated, fresh(0.5, 0.4))
    assert asked == [(10, 20)] and a1["peak_step"] == 10 and a1["final_step"] == 20
    assert a1["fresh_rise"] == pytest.approx(0.6) and a1["fresh_drop"] == pytest.approx(0.5)
    assert a1["fresh_drop_ci"] == pytest.approx(mean_interval([0.4, 0.5, 0.6])[1])
    assert a1["pass"]
    assert not instructgpt.rise_and_fall(evaluated, fresh(0.5, -0.3))["pass"]  # no fall
    assert not instructgpt.rise_and_fall(evaluated, fresh(-0.5, 0.4))["pass"]  # no rise
    # No interior peak: nothing to evaluate again, and it fails.
    rising = instructgpt.rise_and_fall(runs([[0.0, 0.5, 1.0], [0.0, 0.6, 1.1]]), None)
    assert not rising["pass"] and "fresh_drop" not in rising


def test_monotonicity_and_tolerance():
    assert instructgpt.strictly_decreasing([9.0, 4.0, 1.0, 0.5])
    assert not instructgpt.strictly_decreasing([9.0, 4.0, 4.0])
    assert instructgpt.within(4.8, 4.0, 0.2) and instructgpt.within(3.2, 4.0, 0.2)
    assert not instructgpt.within(5.04, 4.0, 0.2)  # 26% over


def test_ptx_tradeoff_hand_computed():
    """Per-seed values, two seeds; the tax cut from the means, the win rate lost paired by seed
    with its t-interval (one degree of freedom: t = 12.706)."""
    tax = {0.0: [0.18, 0.22], 0.5: [0.14, 0.16], 2.0: [0.07, 0.09], 8.0: [0.02, 0.02]}
    win = {0.0: [0.80, 0.80], 0.5: [0.79, 0.79], 2.0: [0.77, 0.77], 8.0: [0.70, 0.70]}
    out = instructgpt.ptx_tradeoff(tax, win, min_tax_cut=0.5, max_win_rate_drop=0.05)
    rows = out["by_gamma"]
    assert rows[0.5]["tax_cut"] == pytest.approx(0.25) and not rows[0.5]["ok"]
    assert rows[2.0]["tax_cut"] == pytest.approx(0.6)
    assert rows[2.0]["win_rate_drop"] == pytest.approx(0.03) and rows[2.0]["ok"]
    assert rows[2.0]["win_rate_drop_half_width"] == pytest.approx(0.0)
    assert rows[8.0]["tax_cut"] == pytest.approx(0.9) and not rows[8.0]["ok"]  # 10 points
    assert out["pass"]
    # The same mean loss, spread over seeds: 0.03 ± 12.706 * 0.01, beyond 5 points.
    spread = {**win, 2.0: [0.78, 0.76]}
    noisy = instructgpt.ptx_tradeoff(tax, spread, min_tax_cut=0.5, max_win_rate_drop=0.05)
    assert noisy["by_gamma"][2.0]["win_rate_drop"] == pytest.approx(0.03)
    assert noisy["by_gamma"][2.0]["win_rate_drop_half_width"] == pytest.approx(0.127062, 1e-4)
    assert not noisy["pass"]
    one_seed = {g: v[:1] for g, v in win.items()}
    assert not instructgpt.ptx_tradeoff(
        {g: v[:1] for g, v in tax.items()}, one_seed, min_tax_cut=0.5, max_win_rate_drop=0.05
    )["pass"]  # no interval with one seed
    strict = instructgpt.ptx_tradeoff(tax, win, min_tax_cut=0.7, max_win_rate_drop=0.05)
    assert not strict["pass"]
    with pytest.raises(ValueError, match="no alignment tax"):
        instructgpt.ptx_tradeoff(
            {0.0: [-0.01], 2.0: [0.0]}, win, min_tax_cut=0.5, max_win_rate_drop=1
        )


def _write_run(directory, lines, samples=()):
    directory.mkdir(parents=True)
    (directory / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (directory / "samples.jsonl").write_text(
        "".join(json.dumps({"step": s, "name": "samples", "texts": t}) + "\n" for s, t in samples)
    )


def _eval(step, gold, kl=1.0):
    return {"step": step, "eval/gold": gold, "eval/kl": kl, "eval/gold_se": 0.1, "eval/proxy": 0}


def test_run_curves_keep_the_last_line_of_a_step_and_split_eval_from_train(tmp_path):
    lines = [
        _eval(0, 1.0, 0.0),
        {"step": 2, "kl/sequence": 0.5, "kl/coef": 0.05, "proxy/mean": 0.1, "gold/mean": 1.1},
        _eval(2, 9.0),  # a killed run's line, redone below
        _eval(2, 1.5),
    ]
    _write_run(tmp_path / "run", lines)
    curves = instructgpt.run_curves(tmp_path / "run")
    assert [p["step"] for p in curves["eval"]] == [0, 2]
    assert curves["eval"][1]["gold"] == 1.5
    assert curves["train"] == [{"step": 2, "kl": 0.5, "kl_coef": 0.05, "proxy": 0.1, "gold": 1.1}]


def test_collapse_samples_at_start_peak_and_end(tmp_path):
    lines = [_eval(0, 1.0, 0.0), _eval(10, 2.0, 5.0), _eval(20, 0.5, 30.0)]
    samples = [(0, ["a", "b"]), (10, ["c", "d"]), (20, ["x", "y"]), (20, ["e", "f"])]
    _write_run(tmp_path / "run", lines, samples)
    out = instructgpt.collapse_samples(tmp_path / "run", num_texts=1)
    assert {k: (v["step"], v["texts"]) for k, v in out.items()} == {
        "start": (0, ["a"]),
        "peak": (10, ["c"]),
        "end": (20, ["e"]),  # the last texts written at a step
    }


def test_seed_mean_curve_over_common_steps():
    a = [{"step": 0, "kl": 0.0}, {"step": 2, "kl": 2.0}, {"step": 4, "kl": 4.0}]
    b = [{"step": 0, "kl": 0.0}, {"step": 2, "kl": 4.0}]
    out = instructgpt.seed_mean_curve([a, b], ("kl",))
    assert [p["step"] for p in out] == [0, 2]
    assert out[1]["kl"] == 3.0
    # t_{0.975, 1} * std([2, 4], ddof=1) / sqrt(2) = 12.706 * sqrt(2) / sqrt(2)
    assert out[1]["kl_ci"] == pytest.approx(12.7062 * math.sqrt(2) / math.sqrt(2), rel=1e-4)
