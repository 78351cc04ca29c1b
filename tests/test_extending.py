"""The recipes of docs/extending.md run as written: every example marked `<!-- example: name -->`
there is executed here as a module, and what it adds works end to end."""

import doctest
import re
import sys
import types
from pathlib import Path

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from alignax import schema, tasks
from alignax.losses import dpo_loss
from alignax.losses.pairwise import PreferenceLogps
from alignax.losses.registry import get_preference_loss, registered
from alignax.losses.spec import SPECS
from alignax.metrics import read_metrics
from alignax.rl import algorithms
from alignax.stages import stage_section
from alignax.workflows import online as grpo_workflow
from alignax.workflows import preference
from configs import dpo as dpo_config
from configs import grpo as grpo_config
from configs import sft as sft_config
from configs.common import stages_parent_config
from tests.helpers import preset_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def example(name: str, monkeypatch) -> types.ModuleType:
    """The example `name` of docs/extending.md, executed as a module."""
    found = re.search(rf"<!-- example: {name} -->\s*```python\n(.*?)```", DOC.read_text(), re.S)
    assert found, f"docs/extending.md has no example {name!r}"
    module = types.ModuleType(f"extending_example_{name}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(found.group(1), f"docs/extending.md ({name})", "exec"), module.__dict__)
    return module


@pytest.fixture
def registry_as_before():
    before = dict(SPECS)
    yield
    SPECS.clear()
    SPECS.update(before)


def test_the_loss_example_registers_a_loss_a_dpo_stage_trains_with(
    monkeypatch, registry_as_before, tmp_path
):
    module = example("loss", monkeypatch)
    assert "dpo_margin" in registered("pairwise")
    pc, pr = jnp.array([-3.0, -5.0]), jnp.array([-4.0, -2.0])
    rc, rr = jnp.array([-3.5, -4.0]), jnp.array([-3.0, -3.0])
    logps = PreferenceLogps(pc, pr, rc, rr, jnp.ones(2), jnp.ones(2))
    loss_fn = get_preference_loss("dpo_margin")
    # margin 0 is DPO; a margin moves the logit by exactly -margin.
    np.testing.assert_allclose(loss_fn(logps, beta=0.1)[0], dpo_loss(pc, pr, rc, rr, beta=0.1)[0])
    h = 0.1 * ((pc - rc) - (pr - rr))
    expected = np.log1p(np.exp(-(h - 0.5)))
    np.testing.assert_allclose(loss_fn(logps, beta=0.1, margin=0.5)[0], expected, rtol=1e-6)
    doctests = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert doctests.attempted == 2 and doctests.failed == 0
    # The preset of the same name, its hyperparameters declared, trains as a DPO stage.
    config = preset_config(
        dpo_config,
        "dpo_margin",
        **{
            "loss.hyperparameters.margin": 0.5,
            "labels.source": "generator", "labels.max_new_tokens": 4,
            "pairs.num_pairs": 16, "pairs.num_eval_pairs": 8,
            "eval.num_prompts": 4, "eval.max_new_tokens": 4,
            "train.steps": 2, "train.batch_size": 8, "train.log_every": 1,
            "train.eval_every": 1000, "train.checkpoint_every": 2,
        },
    )  # fmt: skip
    summary = preference.run(config, tmp_path / "dpo_margin")
    assert summary["loss_name"] == "dpo_margin" and summary["steps"] == 2
    assert np.isfinite(summary["eval_accuracy"])


def test_the_task_example_splits_rewards_and_trains_grpo(monkeypatch, tmp_path):
    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))  # the example registers in here
    module = example("task", monkeypatch)
    task = tasks.get_task("counting")
    assert isinstance(task, module.CountingTask)
    # Disjoint splits for any seeds: a prompt's split is its own.
    train = task.prompt_dataset(64, seed=0, split="train")["prompt_tokens"][:, 1]
    held_out = task.prompt_dataset(64, seed=1, split="eval")["prompt_tokens"][:, 1]
    assert not set(train.tolist()) & set(held_out.tolist())
    # The reward by hand: the right answer in place, then one number off, then after padding.
    prompts = task.prompt_dataset(2, seed=0, split="train")
    target = prompts["target_tokens"]
    tokens = np.concatenate([prompts["prompt_tokens"], target, np.full((2, 1), task.eos_id)], 1)
    mask = np.concatenate([np.zeros((2, 4)), np.ones((2, 4))], 1)
    np.testing.assert_allclose(task.reward(tokens, mask, target_tokens=target), [1.0, 1.0])
    tokens[1, 5] += 1
    np.testing.assert_allclose(task.reward(tokens, mask, target_tokens=target), [1.0, 2 / 3])
    assert task.decode(tokens[0]).endswith("<eos>")
    # Any stage that needs only the protocol runs on it from its config: GRPO.
    config = preset_config(
        grpo_config,
        "runlocal",
        **{
            "rollout.num_prompts": 16, "rollout.group_size": 2, "rollout.max_new_tokens": 4,
            "eval.num_prompts": 8, "train.steps": 2, "train.batch_size": 4,
            "train.log_every": 1, "train.eval_every": 2, "train.checkpoint_every": 2,
        },
    )  # fmt: skip
    with config.unlocked():
        config.task_name, config.task = "counting", module.counting_config()
    summary = grpo_workflow.run(config, tmp_path / "grpo")
    assert summary["steps"] == 2 and 0 <= summary["reward_sampled"] <= 1


def test_the_rl_example_is_an_algorithm_the_grpo_stage_trains(monkeypatch, tmp_path):
    monkeypatch.setattr(algorithms, "ONLINE_ALGORITHMS", dict(algorithms.ONLINE_ALGORITHMS))
    module = example("rl", monkeypatch)
    tiny = {
        "rollout.num_prompts": 16, "rollout.max_new_tokens": 4, "eval.num_prompts": 8,
        "train.steps": 2, "train.batch_size": 8, "train.log_every": 1,
        "train.eval_every": 2, "train.checkpoint_every": 2,
    }  # fmt: skip
    config = preset_config(grpo_config, "review", **tiny, **{"rollout.group_size": 1})
    with config.unlocked():
        config.algorithm = "reinforce"
        config.reinforce = schema.section(module.ReinforceConfig())
    summary = grpo_workflow.run(config, tmp_path / "reinforce")
    assert summary["algorithm"] == "reinforce" and summary["steps"] == 2
    lines = [m for m in read_metrics(tmp_path / "reinforce") if "grad_norm" in m]
    assert len(lines) == 2 and all(m["grad_norm"] > 0 for m in lines)
    # Its checks are its own: a group is refused, naming the key.
    with config.unlocked():
        config.rollout.group_size = 2
    with pytest.raises(ValueError, match=r"rollout\.group_size=2: REINFORCE"):
        grpo_workflow.run(config, tmp_path / "grouped")


def test_the_stage_example_trains_resumes_and_learns(monkeypatch, tmp_path):
    module = example("stage", monkeypatch)
    config = preset_config(
        sft_config,
        **{
            "sft.num_examples": 64, "sft.num_eval_examples": 16,
            "train.steps": 6, "train.batch_size": 16, "train.log_every": 1,
            "train.eval_every": 3, "train.checkpoint_every": 3,
        },
    )  # fmt: skip
    summary = module.run(config, tmp_path / "text_lm")
    nll = [m["eval/nll"] for m in read_metrics(tmp_path / "text_lm") if "eval/nll" in m]
    assert summary["steps"] == 6 and summary["nll"] == nll[-1] < nll[0]
    assert module.run(config, tmp_path / "text_lm")["nll"] == summary["nll"]  # finished: resumed


def test_the_study_example_runs_and_reports(monkeypatch, tmp_path):
    module = example("study", monkeypatch)
    tiny = {
        "train.steps": 2, "train.batch_size": 8, "train.log_every": 1,
        "train.eval_every": 1000, "train.checkpoint_every": 2,
        "eval.num_prompts": 4, "eval.max_new_tokens": 4,
    }  # fmt: skip
    config = stages_parent_config()
    sft = preset_config(sft_config, **tiny, **{"sft.num_examples": 16, "sft.num_eval_examples": 8})
    dpo = preset_config(
        dpo_config,
        **tiny,
        **{"labels.max_new_tokens": 4, "pairs.num_pairs": 16, "pairs.num_eval_pairs": 8},
    )
    config.stages = ml_collections.ConfigDict(
        {"sft": stage_section(sft), "dpo": stage_section(dpo)}
    )
    config.seeds = (0,)
    summary = module.run(config, tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert text.startswith("### My study") and "| dpo |" in text and "| sft |" in text
    for name in ("sft", "dpo"):
        assert np.isfinite(summary[f"{name}/gold"])
    assert (tmp_path / "seed0" / "dpo" / "summary.json").exists()
