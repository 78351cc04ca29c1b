"""The InstructGPT experiment's pure parts: the run plan, the policy sizes, curves read back from
metrics, and the criteria on hand-computed numbers. (The end-to-end run is the notebook fixture
in tests/test_notebooks.py.)"""

import json
import math

import pytest

from alignax.analysis import kl_penalty
from alignax.analysis.stats import seed_mean_curve
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
    policies = ["base", "sft", s.ptx_base, kl_penalty.ptx_name(s.ptx_base, s.size_axis_ptx_coef)]
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
    lines = kl_penalty.size_table(config, combined)
    rows = [line for line in lines if line.startswith(f"| {widths[1]} (")]
    params = kl_penalty.num_params(config, widths[1]) / 1e3
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

    monkeypatch.setattr(kl_penalty.plots, "save", record)
    kl_penalty.size_figure(config, combined, tmp_path)
    sizes = [kl_penalty.num_params(config, w) for w in widths]
    win = {key: r["win_rate_vs_sft"][0] for key, r in combined.items()}
    assert drawn["PPO"] == [[n, win[f"d{w}/{policies[2]}"]] for n, w in zip(sizes, widths)]
    assert drawn["PPO-ptx"] == [
        [n, win[f"d{w}/{policies[3]}"]] for n, w in zip(sizes[1:], widths[1:])
    ]


def _eval(step, gold, kl=1.0):
    return {"step": step, "eval/gold": gold, "eval/kl": kl, "eval/gold_se": 0.1, "eval/proxy": 0}


def _write_run(directory, lines, samples=()):
    directory.mkdir(parents=True)
    (directory / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (directory / "samples.jsonl").write_text(
        "".join(json.dumps({"step": s, "name": "samples", "texts": t}) + "\n" for s, t in samples)
    )


def test_run_curves_keep_the_last_line_of_a_step_and_split_eval_from_train(tmp_path):
    lines = [
        _eval(0, 1.0, 0.0),
        {"step": 2, "kl/sequence": 0.5, "kl/coef": 0.05, "proxy/mean": 0.1, "gold/mean": 1.1},
        _eval(2, 9.0),  # a killed run's line, redone below
        _eval(2, 1.5),
    ]
    _write_run(tmp_path / "run", lines)
    curves = kl_penalty.run_curves(tmp_path / "run")
    assert [p["step"] for p in curves["eval"]] == [0, 2]
    assert curves["eval"][1]["gold"] == 1.5
    assert curves["train"] == [{"step": 2, "kl": 0.5, "kl_coef": 0.05, "proxy": 0.1, "gold": 1.1}]


def test_collapse_samples_at_start_peak_and_end(tmp_path):
    lines = [_eval(0, 1.0, 0.0), _eval(10, 2.0, 5.0), _eval(20, 0.5, 30.0)]
    samples = [(0, ["a", "b"]), (10, ["c", "d"]), (20, ["x", "y"]), (20, ["e", "f"])]
    _write_run(tmp_path / "run", lines, samples)
    out = kl_penalty.collapse_samples(tmp_path / "run", num_texts=1)
    assert {k: (v["step"], v["texts"]) for k, v in out.items()} == {
        "start": (0, ["a"]),
        "peak": (10, ["c"]),
        "end": (20, ["e"]),  # the last texts written at a step
    }


def test_seed_mean_curve_over_common_steps():
    a = [{"step": 0, "kl": 0.0}, {"step": 2, "kl": 2.0}, {"step": 4, "kl": 4.0}]
    b = [{"step": 0, "kl": 0.0}, {"step": 2, "kl": 4.0}]
    out = seed_mean_curve([a, b], ("kl",))
    assert [p["step"] for p in out] == [0, 2]
    assert out[1]["kl"] == 3.0
    # t_{0.975, 1} * std([2, 4], ddof=1) / sqrt(2) = 12.706 * sqrt(2) / sqrt(2)
    assert out[1]["kl_ci"] == pytest.approx(12.7062 * math.sqrt(2) / math.sqrt(2), rel=1e-4)
