"""End-to-end: experiments/rlaif.py runs its runlocal config (SFT from scratch -> SFT-sample pairs
-> AI-judge labels with targeted / random human labels -> DPO per condition -> results.md), and
its numbers obey the identities that define them; experiments/dpa.py and
experiments/critique_revision.py on the same SFT policy."""

import json

import numpy as np
import pytest

from alignax.analysis.frontier import at_kl
from alignax.analysis.label_budget import aggregate, closes_gap
from alignax.analysis.stats import mean_interval
from alignax.feedback.routing import conditions
from alignax.feedback.runs import judge_labels
from alignax.metrics import read_metrics
from alignax.workdir import ConfigChangedError
from configs import rlaif as rlaif_config
from experiments import rlaif
from tests.helpers import run_notebook

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    # The DPO runs of the conditions compile the same programs: all but the first read them
    # from the session's compilation cache (tests/conftest.py).
    workdir = tmp_path_factory.mktemp("rlaif")
    config = rlaif_config.get_config("runlocal")
    summary = rlaif.run(config, workdir)
    return config, workdir, summary


def test_rlaif_runlocal_reports_every_condition_with_provenance(smoke):
    """results.md starts with the command and commit; one row per condition; figures saved."""
    config, workdir, summary = smoke
    text = (workdir / "results.md").read_text()
    assert "Written by `" in text.splitlines()[2] and "at commit `" in text.splitlines()[2]
    result = json.loads((workdir / "results.json").read_text())
    got = [(r["routing"], r["percent"]) for r in result["conditions"]]
    assert got == conditions(config.routing)
    assert ("targeted", 0.0) in got and ("targeted", 100.0) in got and ("random", 25.0) in got
    for suffix in ("png", "pdf"):
        assert (workdir / "figures" / f"rlaif_budget.{suffix}").stat().st_size > 0
    assert all(np.isfinite(r["gold_reward"][0]) for r in result["conditions"])
    assert summary["gold_reward/targeted_100"] == result["conditions"][2]["gold_reward"][0]
    # Delta learning: a weak SFT of `delta.weak_sft_steps` steps, one unlabelled DPO run.
    weak_steps = [m["step"] for m in read_metrics(workdir / "sft_weak") if "loss" in m]
    assert weak_steps[-1] == config.delta.weak_sft_steps
    assert (workdir / "seed0" / "dpo" / "delta" / "summary.json").exists()
    assert summary["gold_reward/delta"] == result["delta"]["gold_reward"][0]
    (seed,) = result["per_seed"]
    human = next(r for r in seed["runs"] if r["percent"] == 100.0)
    assert result["delta"]["minus_human_gold_reward"][0] == pytest.approx(
        seed["delta"]["gold_reward"] - human["gold_reward"]
    )
    assert "Delta learning (Olmo 3)" in text


def test_rlaif_notebook_runs_through_a_kernel_on_the_smoke_run(smoke):
    _, workdir, _ = smoke
    run_notebook("rlaif.ipynb", workdir)


def test_rlaif_label_agreement_identities(smoke):
    """0% human labels = the judge's labels, 100% = the human's; each budget relabels exactly
    floor(p N / 100) pairs; random and targeted spend the same count."""
    config, workdir, _ = smoke
    (seed,) = json.loads((workdir / "results.json").read_text())["per_seed"]
    runs = {(r["routing"], r["percent"]): r for r in seed["runs"]}
    n = config.pairs.num_pairs
    assert runs[("targeted", 0.0)]["label_gold_agreement"] == seed["judge"]["gold_agreement"]
    assert runs[("targeted", 100.0)]["label_human_agreement"] == 1.0
    assert (
        runs[("targeted", 100.0)]["label_gold_agreement"] == seed["judge"]["human_gold_agreement"]
    )
    for (_, percent), r in runs.items():
        assert r["gold_labels"] == int(percent * n // 100)
    assert runs[("random", 25.0)]["gold_labels"] == runs[("targeted", 25.0)]["gold_labels"]
    # The runlocal judge (gold's principles without fluency) agrees with gold better than chance
    # and, being a deterministic function of the responses, has no position bias.
    assert seed["judge"]["gold_agreement"] > 0.6
    assert seed["judge"]["logit_bias"] == pytest.approx(0.0, abs=1e-9)


def test_rlaif_rerun_reuses_cached_stages(smoke):
    """A second run in the same workdir reads every stage back and reports the same numbers."""
    config, workdir, summary = smoke
    before = (workdir / "results.json").read_text()
    again = rlaif.run(config, workdir)
    after = json.loads((workdir / "results.json").read_text())
    assert after["conditions"] == json.loads(before)["conditions"]
    assert {k: v for k, v in again.items() if not k.startswith("seconds")} == {
        k: v for k, v in summary.items() if not k.startswith("seconds")
    }


def test_a_rerun_with_other_labels_is_refused_not_skipped(smoke):
    """The DPO stages train on pairs the study labels outside their configs; a rerun whose judge
    differs must not find them finished (nor resume them silently): refused before anything
    runs, naming the key."""
    config, workdir, _ = smoke
    changed = config.copy_and_resolve_references()
    changed.judge.temperature = 2.0
    with pytest.raises(ConfigChangedError, match=r"inputs_from\.judge\.temperature"):
        rlaif.run(changed, workdir)
    assert json.loads((workdir / "config.json").read_text())["judge"]["temperature"] == 1.0


def test_paired_differences_and_the_gap_criterion_by_hand():
    """Each condition's gold minus AI only / human only / random is the mean of the per-seed
    differences with its t-interval; a budget closes the gap when it is above AI only and not
    below human only, with one seed undecided."""
    config = rlaif_config.get_config("runlocal")
    gold = {  # three seeds; seed 2 shifts every condition alike (paired: it cancels)
        ("targeted", 0.0): [0.0, 0.1, 5.0],
        ("targeted", 25.0): [0.5, 0.7, 5.6],
        ("targeted", 100.0): [0.6, 0.6, 5.6],
        ("random", 25.0): [0.1, 0.2, 5.0],
    }

    def seed(i):
        runs = [
            {"routing": r, "percent": p, "gold_reward": g[i], "gold_labels": 0}
            | {k: 0.0 for k in ("label_gold_agreement", "kl_to_reference", "eval_accuracy")}
            for (r, p), g in gold.items()
        ]
        return {"judge": {"gold_agreement": 0.8}, "runs": runs}

    rows = {
        (r["routing"], r["percent"]): r
        for r in aggregate(conditions(config.routing), [seed(i) for i in range(3)])["conditions"]
    }
    row = rows[("targeted", 25.0)]
    for key, diffs in (
        ("minus_ai", [0.5, 0.6, 0.6]),
        ("minus_human", [-0.1, 0.1, 0.0]),
        ("minus_random", [0.4, 0.5, 0.6]),
    ):
        assert row[key] == pytest.approx(mean_interval(diffs))
    assert "minus_random" not in rows[("random", 25.0)]
    assert closes_gap(row) is True
    assert closes_gap(rows[("random", 25.0)]) is False  # not above AI only
    assert closes_gap(rows[("targeted", 0.0)]) is False
    assert closes_gap({"minus_ai": (1.0, float("nan")), "minus_human": (0.0, 1.0)}) is None
    below = {"minus_ai": (1.0, 0.5), "minus_human": (-1.0, 0.5)}
    assert closes_gap(below) is False


def test_judge_labels_are_its_argmax_or_draws_from_its_probability():
    probability = np.array([0.0, 0.3, 0.5, 0.7, 1.0] * 2000)
    config = rlaif_config.get_config("runlocal").judge
    argmax = config.copy_and_resolve_references()
    argmax.sample_labels = False
    np.testing.assert_array_equal(
        judge_labels(argmax, probability, np.random.default_rng(0)), probability >= 0.5
    )
    assert config.sample_labels
    drawn = judge_labels(config, probability, np.random.default_rng(0))
    for p in (0.0, 0.3, 0.5, 0.7, 1.0):
        assert drawn[probability == p].mean() == pytest.approx(p, abs=0.03)


# ------------------------------------------------------------------------------ directions (DPA)
def test_dpa_runlocal_traces_one_point_per_direction(smoke, tmp_path):
    """experiments/dpa.py from the RLAIF run's SFT policy: one DPO run per direction, scores on
    both objectives, the figure, and results.md with its provenance."""
    from configs import dpa as dpa_config
    from experiments import dpa

    _, rlaif_dir, _ = smoke
    config = dpa_config.get_config("runlocal")
    with config.unlocked():
        config.labels.policy_from = str(rlaif_dir / "sft")
    summary = dpa.run(config, tmp_path / "dpa")
    result = json.loads((tmp_path / "dpa" / "results.json").read_text())
    assert [r["degrees"] for r in result["directions"]] == list(config.directions)
    for r in [result["sft"], *result["directions"]]:
        assert len(r["objectives"]) == 2 and all(np.isfinite(v[0]) for v in r["objectives"])
    assert summary["sentiment/direction_0"] == result["directions"][0]["objectives"][0][0]
    assert all(0 <= r["tied_share"][0] <= 1 for r in result["directions"])
    for seed in result["per_seed"]:  # the SFT policy, then every kept checkpoint of each run
        for run in seed["runs"]:
            steps = [p["step"] for p in run["trajectory"]]
            assert steps == list(range(0, config.dpo.train.steps + 1, 2))
            assert run["trajectory"][0]["objectives"] == seed["sft"]["objectives"]
            assert run["trajectory"][-1]["objectives"] == run["objectives"]
            # KL measured on the scored responses: exactly 0 for the SFT policy against itself.
            assert run["trajectory"][0]["kl"] == 0.0 == seed["sft"]["kl"]
            assert all(np.isfinite(p["kl"]) for p in run["trajectory"])
            assert run["kl_to_reference"] == run["trajectory"][-1]["kl"]
            assert run["matched"] == at_kl(run["trajectory"], config.matched_kl)
    assert [r["degrees"] for r in result["matched_kl"]["directions"]] == list(config.directions)
    text = (tmp_path / "dpa" / "results.md").read_text()
    assert "Written by `" in text.splitlines()[2]
    for suffix in ("png", "pdf"):
        assert (tmp_path / "dpa" / "figures" / f"pareto_front.{suffix}").stat().st_size > 0
    # No SFT stage of its own: the policy came from the RLAIF run.
    assert not (tmp_path / "dpa" / "sft").exists()
    run_notebook("dpa.ipynb", tmp_path / "dpa")


# ------------------------------------------------------------------- critique and revision
def test_critique_revision_runlocal_compares_both_variants(smoke, tmp_path):
    """experiments/critique_revision.py from the RLAIF run's SFT policy: SFT on the originals
    and on the revisions, RLAIF from each, one row per policy; the revised data is better by
    the principles' own measure."""
    from configs import critique_revision as config_module
    from experiments import critique_revision

    _, rlaif_dir, _ = smoke
    config = config_module.get_config("runlocal")
    with config.unlocked():
        config.labels.policy_from = str(rlaif_dir / "sft")
    summary = critique_revision.run(config, tmp_path / "cr")
    result = json.loads((tmp_path / "cr" / "results.json").read_text())
    assert list(result["policies"]) == [
        "SFT (start)",
        "SFT on the originals",
        "SFT on the revisions",
        "SFT + RLAIF on the originals",
        "SFT + RLAIF on the revisions",
    ]
    (seed,) = result["per_seed"]
    assert seed["data"]["revisions_gold"] > seed["data"]["originals_gold"]
    assert 0 < seed["data"]["changed"] <= 1
    for variant in ("originals", "revisions"):
        steps = [m["step"] for m in read_metrics(tmp_path / "cr" / "seed0" / f"sft_on_{variant}")]
        assert max(steps) == config.revision.train.steps
    assert summary["gold_reward/SFT (start)"] == seed["sft"]["gold_reward"]
    assert "Written by `" in (tmp_path / "cr" / "results.md").read_text().splitlines()[2]
    run_notebook("critique_revision.ipynb", tmp_path / "cr")
