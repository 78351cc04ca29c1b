"""Overrides are applied or refused, never ignored, and bad values stop a run before it writes or
computes anything: the config checks of alignax/experiment.py, alignax/stages.py and
alignax/cli.py, and their use by the pipeline (experiments/pipeline.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignax.cli import unknown_override
from alignax.experiment import validate_config
from alignax.stages import stage_config, stage_section
from alignax.study import Study, rlhf_stage_config
from alignax.training import train_batches
from alignax.workdir import ConfigChangedError
from configs import pipeline as pipeline_config
from configs import sft as sft_config
from experiments import pipeline
from tests.helpers import preset_config

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ optimizer keys
@pytest.mark.parametrize(
    "leaf, bad",
    [
        ("learning_rate", -1.0),
        ("learning_rate", 0.0),
        ("learning_rate", float("nan")),
        ("warmup_steps", -5),
        ("schedule", "linear"),
        ("weight_decay", -0.1),
        ("b1", 1.0),
        ("b2", -0.5),
        ("grad_clip", 0.0),
    ],
)
def test_every_optimizer_key_is_checked_naming_its_full_key(leaf, bad):
    config = preset_config(pipeline_config, **{f"stages.sft.optimizer.{leaf}": bad})
    with pytest.raises(ValueError, match=rf"config stages\.sft\.optimizer\.{leaf}="):
        validate_config(config)


def test_the_presets_optimizers_pass_the_checks():
    validate_config(pipeline_config.get_config())
    validate_config(sft_config.get_config("runlocal"))


def test_repeated_seeds_are_refused():
    config = preset_config(pipeline_config, seeds=(0, 1, 0))
    with pytest.raises(ValueError, match=r"config seeds=\[0, 1, 0\].*repeated: \[0\]"):
        validate_config(config)


# ------------------------------------------------------------------------------ stage sections
def test_a_stage_section_has_no_copy_of_what_the_parent_sets():
    config = pipeline_config.get_config()
    for name in ("pretrain", "sft", "ppo", "dpo"):
        assert not {"seed", "model", "task", "mesh"} & set(config.stages[name])
    assert "model" in config.stages.reward_model  # the reward model has a size of its own


def test_the_parents_model_applies_to_every_stage_but_the_reward_model(tmp_path):
    config = preset_config(pipeline_config, **{"model.d_model": 128})
    for name in ("pretrain", "sft", "ppo", "dpo"):
        stage = rlhf_stage_config(config, name, 1, tmp_path)
        assert stage.model.d_model == 128 and stage.seed == 1
    reward_model = rlhf_stage_config(config, "reward_model", 1, tmp_path)
    assert reward_model.model.d_model == config.stages.reward_model.model.d_model != 128


def test_a_section_that_keeps_a_parent_section_is_refused():
    parent = pipeline_config.get_config()
    shared = ("task_name", "task", "model", "mesh")  # the pipeline's seeds are set per stage
    with pytest.raises(ValueError, match=r"stages\.sft\.task_name: the parent's 'task_name'"):
        stage_config(parent, sft_config.get_config("runlocal"), {}, shared, name="stages.sft")
    stage = stage_config(parent, stage_section(sft_config.get_config("runlocal")), {}, shared)
    assert stage.model == parent.model


def test_an_override_of_a_link_is_refused_naming_the_key(tmp_path):
    config = preset_config(pipeline_config, **{"stages.sft.init_from": "/elsewhere"})
    with pytest.raises(ValueError, match=r"config stages\.sft\.init_from='/elsewhere'"):
        Study.of(pipeline.__name__).prepare(config, tmp_path)
    assert not tmp_path.joinpath("config.json").exists()


def test_a_pipeline_that_would_drop_checkpoints_its_paths_read_is_refused(tmp_path):
    """More PPO iterations at the same checkpoint interval save more checkpoints than the preset
    keeps: refused before anything runs, naming the key and the count, not a shorter path."""
    config = preset_config(pipeline_config, **{"stages.ppo.train.steps": 200})
    with pytest.raises(
        ValueError,
        match=r"stages\.ppo\.train\.keep_checkpoints=4 keeps fewer than the 8 checkpoints .*"
        r"--config\.stages\.ppo\.train\.keep_checkpoints=8",
    ):
        Study.of(pipeline.__name__).prepare(config, tmp_path)
    assert not tmp_path.joinpath("config.json").exists()
    kept = preset_config(
        pipeline_config,
        **{"stages.ppo.train.steps": 200, "stages.ppo.train.keep_checkpoints": 8},
    )
    Study.of(pipeline.__name__).prepare(kept, tmp_path / "kept")  # what the message asks for


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "stages.sft.model.d_model=128",
            "no key 'stages.sft.model'; the top-level 'model' applies to every stage: "
            "--config.model.d_model",
        ),
        ("stages.sft.seed=7", "no key 'stages.sft.seed'; the top-level 'seeds' applies"),
        ("stages.sft.train.stepz=7", "no key 'stages.sft.train.stepz'"),
        (  # an old spelling names the one key of its concept
            "stages.sft.sft.num_eval_prompts=8",
            "renamed, use --config.stages.sft.eval.num_prompts",
        ),
        ("stages.ppo.rollout.num_eval_prompts=8", "use --config.stages.ppo.eval.num_prompts"),
        ("stages.dpo.preferences.max_new_tokens=8", "use --config.stages.dpo.eval.max_new_tokens"),
        ("stages.reward_model.reward.num_comparisons=8", "use --config.stages.reward_model.pairs"),
    ],
)
def test_an_override_of_a_missing_key_names_it(override, message):
    argv = ["prog", "--config", "configs/pipeline.py:runlocal", f"--config.{override}"]
    assert message in unknown_override(argv)
    assert unknown_override([*argv[:3], "--config.model.d_model=128"]) is None


def _command(experiment: str, config: str, workdir: Path, *overrides: str):
    """`python -m experiments.<experiment>` as a user types it; its exit status and output."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            f"experiments.{experiment}",
            f"--config={config}",
            f"--workdir={workdir}",
            *overrides,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


@pytest.mark.slow
def test_the_command_line_refuses_an_ignored_override_before_it_writes(tmp_path):
    workdir = tmp_path / "pipeline"
    override = "--config.stages.sft.model.d_model=128"
    result = _command("pipeline", "configs/pipeline.py:runlocal", workdir, override)
    assert result.returncode != 0
    assert "--config.stages.sft.model.d_model" in result.stderr
    assert "--config.model.d_model" in result.stderr
    assert not workdir.exists()


# ------------------------------------------------------------------------------ batch size
def test_a_batch_larger_than_the_data_names_the_key_and_the_data_size():
    config = preset_config(sft_config, **{"train.batch_size": 32})
    arrays = {"tokens": np.zeros((8, 4), np.int32)}
    with pytest.raises(
        ValueError, match=r"train\.batch_size=32 is more than the stage's 8 training pairs"
    ):
        train_batches(config, arrays, unit="pairs")
    assert train_batches(preset_config(sft_config, **{"train.batch_size": 8}), arrays, unit="x")


def test_a_length_correction_without_a_reward_model_to_correct_is_refused():
    from alignax.tasks import stage_task
    from alignax.workflows import ppo
    from configs import ppo as ppo_config

    config = preset_config(ppo_config, "gold", **{"init_from": "runs/sft"})
    ppo.check_config(config, stage_task(config))  # gold reward, nothing to correct: accepted
    config = preset_config(
        ppo_config, "gold", **{"init_from": "runs/sft", "rewards.length_debias": True}
    )
    with pytest.raises(ValueError, match=r"rewards.length_debias=True corrects a reward model's"):
        ppo.check_config(config, stage_task(config))


@pytest.mark.slow
def test_a_run_refused_after_setup_leaves_no_workdir(tmp_path):
    """The batch check runs after `setup` wrote the workdir's config.json: the command line
    removes what that start wrote, as nothing was computed."""
    workdir = tmp_path / "runs" / "sft"
    override = "--config.train.batch_size=100000"
    result = _command("sft", "configs/sft.py:runlocal", workdir, override)
    assert result.returncode != 0 and "train.batch_size=100000" in result.stderr
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------ pipeline plan
def test_a_refused_pipeline_rerun_leaves_its_config_json_as_it_was(tmp_path):
    """A stage that holds checkpoints of another config is refused before the pipeline writes
    its own config.json, which keeps describing the results beside it."""
    config = pipeline_config.get_config()
    sft_dir = tmp_path / "seed0" / "sft"
    (sft_dir / "checkpoints" / "20").mkdir(parents=True)
    stage = rlhf_stage_config(config, "sft", 0, tmp_path / "seed0")
    (sft_dir / "config.json").write_text(stage.to_json_best_effort())
    (tmp_path / "config.json").write_text(config.to_json_best_effort())
    before = (tmp_path / "config.json").read_text()
    changed = preset_config(pipeline_config, **{"stages.sft.train.steps": 30})
    with pytest.raises(ConfigChangedError, match=r"train\.steps: \d+ -> 30"):
        pipeline.run(changed, tmp_path)
    assert (tmp_path / "config.json").read_text() == before
    assert json.loads(before)["stages"]["sft"]["train"]["steps"] != 30


def test_a_task_name_switched_without_its_section_is_refused_naming_both():
    """`--config.task_name=arithmetic` on a review preset keeps the review task's `task`
    section; the task is refused naming the key and what to use, not built from wrong keys."""
    from alignax.tasks import get_task

    config = preset_config(sft_config, **{"task_name": "arithmetic"})
    with pytest.raises(ValueError, match=r"task_name='arithmetic', but config\.task holds"):
        get_task(config.task_name, config.task)
