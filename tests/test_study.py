"""The Study runner (alignax/study.py) on a toy study of one tiny SFT stage per seed: what it
writes, what a second invocation skips, and what it refuses before anything runs."""

import json

import ml_collections
import pytest

from alignax.stages import stage_section
from alignax.study import PlannedStage, Study, run_study, seed_stage_config, split_results_record
from alignax.workdir import ConfigChangedError
from alignax.workflows import sft
from configs import sft as sft_config
from configs.common import stages_parent_config
from tests.helpers import preset_config

EVALUATED = []  # (seed, seed_dir) of every evaluate_seed call, in this process


def plan(config, seed, seed_dir):
    return [PlannedStage("sft", sft.KIND, seed_stage_config(config, "sft", seed, {}))]


def evaluate_seed(config, seed, seed_dir):
    EVALUATED.append(seed)
    return json.loads((seed_dir / "sft" / "summary.json").read_text())["eval_nll"]


def analyse(config, seeds, workdir):
    return {"nll": {str(seed): nll for seed, nll in seeds.items()}}


def report(config, results, timings, prov):
    return f"### Toy\n\nWritten at {prov['commit']}; {len(results['nll'])} seeds.\n"


def summarize(results):
    return {"mean_nll": sum(results["nll"].values()) / len(results["nll"])}


TOY = Study.of(__name__)


def _config(steps=2):
    config = stages_parent_config()
    stage = preset_config(
        sft_config,
        **{
            "train.steps": steps, "train.batch_size": 8, "train.log_every": 1,
            "train.eval_every": 1000, "train.checkpoint_every": steps,
            "sft.num_examples": 16, "sft.num_eval_examples": 8,
            "eval.num_prompts": 4, "eval.max_new_tokens": 4,
        },
    )  # fmt: skip
    config.stages = ml_collections.ConfigDict({"sft": stage_section(stage)})
    config.seeds = (0, 1)
    return config


def test_a_study_writes_its_results_and_a_rerun_skips_what_finished(tmp_path, capsys):
    EVALUATED.clear()
    summary = run_study(TOY, _config(), tmp_path)
    assert EVALUATED == [0, 1]
    for seed in (0, 1):  # each seed's stage in its own directory, with its own seed
        stage = json.loads((tmp_path / f"seed{seed}" / "sft" / "config.json").read_text())
        assert stage["seed"] == seed
        ledger = json.loads((tmp_path / f"seed{seed}" / "timings.json").read_text())
        assert set(ledger) == {"seconds/sft", "seconds/eval"}
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["nll"]) == {"0", "1"}
    assert {"command", "commit", "machine"} <= set(results["provenance"])
    assert results["seconds/sft"] > 0 and results["seconds/total"] > 0
    assert (tmp_path / "results.md").read_text().startswith("### Toy")
    # results.json splits back into what the report was written from (experiments.publish
    # re-renders a published block this way).
    analysis, timings, prov = split_results_record(results)
    assert set(analysis) == {"nll"} and set(timings) == {
        "seconds/sft",
        "seconds/eval",
        "seconds/total",
    }
    assert TOY.report(_config(), analysis, timings, prov) == (tmp_path / "results.md").read_text()
    assert summary["mean_nll"] == pytest.approx(sum(results["nll"].values()) / 2)
    capsys.readouterr()

    again = run_study(TOY, _config(), tmp_path)
    assert "seed 0, sft: finished, skipped" in capsys.readouterr().out
    assert again["mean_nll"] == summary["mean_nll"]
    # The stage seconds are not counted again; the wall time of both invocations is summed.
    rerun = json.loads((tmp_path / "results.json").read_text())
    assert rerun["seconds/sft"] == results["seconds/sft"]
    assert rerun["seconds/total"] > results["seconds/total"]


def test_a_stage_holding_checkpoints_of_another_config_stops_the_study_first(tmp_path):
    run_study(TOY, _config(steps=2), tmp_path)
    EVALUATED.clear()
    before = (tmp_path / "config.json").read_text()
    with pytest.raises(ConfigChangedError, match=r"train\.steps: 2 -> 3"):
        run_study(TOY, _config(steps=3), tmp_path)
    assert not EVALUATED and (tmp_path / "config.json").read_text() == before
