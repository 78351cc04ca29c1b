"""The process_reward stage: solutions (a policy's, or references with corrupted steps) labelled
by the step checker, by Monte Carlo rollouts, or at the outcome only; a value head learns them.
The Stage contract (LoRA, remat, bf16, kill/resume) is tests/test_workflows.py's."""

import jax
import numpy as np
import pytest

from alignax.metrics import read_metrics
from alignax.tasks import get_task
from alignax.workflows import process_reward
from configs import process_reward as process_reward_config
from tests.helpers import preset_config, short_run, tiny_model


def _config(preset="runlocal", **overrides):
    return preset_config(
        process_reward_config,
        preset,
        **short_run(**{"process.solutions": "references", **overrides}),
    )


@pytest.fixture(scope="module")
def task():
    config = _config()
    return get_task(config.task_name, config.task)


def test_checker_labels_mark_every_step_and_corruptions_are_wrong_steps(task):
    config = _config(**{"process.corruption_rate": 0.5})
    data = process_reward.solutions(config, task, (None, None), 64, seed=0, split="train")
    np.testing.assert_array_equal(data["step_mask"], data["checked_mask"])
    assert np.all(data["step_mask"] <= data["loss_mask"])
    steps = data["step_mask"].sum(axis=1)
    assert np.all(steps == 3)  # three-step problems: two "=" and the answer
    wrong = ((data["step_labels"] < 0.5) & (data["step_mask"] > 0)).any(axis=1)
    assert 0.3 < wrong.mean() < 0.7  # about corruption_rate of the solutions
    # A corrupted answer fails the verifier; a corrupted earlier step need not.
    assert np.all(data["verified"][~wrong] == 1) and (data["verified"][wrong] == 0).any()
    clean = process_reward.solutions(
        _config(**{"process.corruption_rate": 0.0}), task, (None, None), 16, seed=0, split="eval"
    )
    assert clean["step_labels"][clean["step_mask"] > 0].min() == 1


def test_outcome_labels_only_the_last_step_with_the_verifier(task):
    data = process_reward.solutions(
        _config("outcome"), task, (None, None), 32, seed=0, split="train"
    )
    assert np.all(data["step_mask"].sum(axis=1) == 1)
    last = np.argmax(data["step_mask"], axis=1)
    assert np.all(last == data["loss_mask"].sum(axis=1) + np.argmax(data["loss_mask"], axis=1) - 1)
    np.testing.assert_array_equal(data["step_labels"][np.arange(32), last], data["verified"])
    assert data["checked_mask"].sum() == 3 * 32  # evaluation still reads every step


def test_monte_carlo_labels_are_shares_of_a_policys_rollouts(task):
    config = _config("monte_carlo", **{"process.num_rollouts": 2})
    model = tiny_model(vocab_size=task.vocab_size, max_len=64)
    policy = (model, model.init(jax.random.key(0)))
    data = process_reward.solutions(config, task, policy, 8, seed=0, split="train")
    labels = data["step_labels"][data["step_mask"] > 0].reshape(8, 3)
    assert set(np.unique(labels[:, :2])) <= {0.0, 0.5, 1.0}
    np.testing.assert_array_equal(labels[:, 2], data["verified"])


def test_bad_settings_are_refused_naming_the_key(tmp_path):
    for overrides, message in [
        ({"process.label_source": "human"}, "process.label_source='human'"),
        ({"process.solution_score": "mean"}, "process.solution_score='mean'"),
        ({"process.solutions": "generator"}, "process.solutions='generator'"),
        ({"process.solutions": "policy"}, "needs labels.policy_from"),
    ]:
        with pytest.raises(ValueError, match=message):
            process_reward.run(_config(**overrides), tmp_path / "run")


def test_the_value_head_learns_its_step_labels(tmp_path):
    """On 64 solutions for 80 steps the training loss falls well below its start and the held-out
    metrics are probabilities (the toy run does not learn to check arithmetic)."""
    config = _config(
        **{
            "process.num_solutions": 64,
            "process.num_eval_solutions": 32,
            "train.steps": 80,
            "train.batch_size": 16,
        }
    )
    summary = process_reward.run(config, tmp_path / "prm")
    losses = [m["loss"] for m in read_metrics(tmp_path / "prm") if "loss" in m and "step" in m]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    assert 0 <= summary["step_accuracy"] <= 1 and 0 <= summary["solution_auc"] <= 1
    assert summary["steps"] == 80
