"""Iterated RLHF: its rounds and points, and its checks before it runs (the end-to-end run:
tests/test_notebooks.py)."""

from pathlib import Path

import pytest

from configs import iterated_rlhf as config_module
from experiments import iterated_rlhf
from tests.helpers import preset_config


def test_the_arms_spend_the_same_labels_steps_and_iterations():
    config = preset_config(config_module, "default")
    stages = {s.name: s.config for s in iterated_rlhf.plan(config, 0, Path("/seed0"))}
    rm, rounds = config.stages.reward_model, config.rounds
    for beta in config.betas:
        names = iterated_rlhf.rounds_of(beta, rounds)
        assert sum(stages[r].pairs.num_pairs for r, _ in names) == rm.pairs.num_pairs
        assert sum(stages[r].train.steps for r, _ in names) == rm.train.steps
        assert sum(stages[p].train.steps for _, p in names) == (
            stages[f"ppo_fixed_beta{beta:g}"].train.steps
        )
        # Fresh prompts and samples every round.
        assert (
            len({stages[r].seed for r, _ in names} | {stages[p].seed for _, p in names}) == rounds
        )
    lines = iterated_rlhf.trajectories(config)
    # The iterated arm at 8 and 16 iterations of each 16-iteration round: 8, 16, ..., 64 overall.
    assert list(lines["iterated_beta0"]) == [f"iterated_beta0@{8 * k}" for k in range(1, 9)]
    assert lines["iterated_beta0"]["iterated_beta0@24"] == ("ppo_iterated_beta0_r2", 8)
    spent = iterated_rlhf.labels_spent(config)
    assert spent["iterated_beta0"] == [(f"iterated_beta0@{16 * r}", 512 * r) for r in range(1, 5)]
    assert spent["fixed_beta0"] == [("ppo_fixed_beta0@64", 2048)]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("rounds", 1, r"rounds=1: the iterated arm needs at least 2 rounds"),
        ("rounds", 3, r"must divide among rounds=3"),
        ("betas", (0.0, 0.0), r"betas=\(0.0, 0.0\): distinct"),
        ("stages.ppo.ppo.kl_control", "adaptive", r"kl_control='adaptive': must be 'fixed'"),
        ("measure.kl_budgets", (0.0,), r"positive KL budgets"),
        ("measure.checkpoints", (2, 3), r"measure.checkpoints=\(2, 3\): increasing multiples"),
        ("measure.checkpoints", (4,), r"must hold a round's length, 2 PPO iterations"),
    ],  # fmt: skip
)
def test_a_bad_setting_is_refused_before_anything_runs(key, value, message, tmp_path):
    config = preset_config(config_module, **{key: value})
    with pytest.raises(ValueError, match=message):
        iterated_rlhf.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
