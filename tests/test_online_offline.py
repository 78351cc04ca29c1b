"""The online-offline study's plan: every method spends the budget's labels, online DPO chains
its rounds, and a bad setting is refused before anything runs (the end-to-end run:
tests/test_notebooks.py)."""

from pathlib import Path

import pytest

from configs import online_offline as config_module
from experiments import online_offline
from tests.helpers import preset_config


def test_every_method_spends_the_budgets_labels_and_online_rounds_chain(tmp_path):
    config = preset_config(config_module, "default")
    stages = {s.name: s.config for s in online_offline.plan(config, 3, tmp_path)}
    rounds, steps = config.online.rounds, config.stages.dpo.train.steps
    for budget in config.budgets:
        assert stages[f"offline_b{budget}"].pairs.num_pairs == budget
        assert stages[f"rm_b{budget}"].pairs.num_pairs == budget
        online = [stages[f"online_b{budget}_r{r}"] for r in range(1, rounds + 1)]
        assert sum(s.pairs.num_pairs for s in online) == budget
        assert (
            sum(s.train.steps for s in online) == steps == stages[f"offline_b{budget}"].train.steps
        )
        starts = [Path(s.init_from) for s in online]
        assert starts == [tmp_path / "sft"] + [
            tmp_path / f"online_b{budget}_r{r}" for r in range(1, rounds)
        ]
        assert all(s.labels.policy_from == s.init_from for s in online)
        warmup = config.stages.dpo.optimizer.warmup_steps
        assert sum(s.optimizer.warmup_steps for s in online) == warmup
        assert len({s.seed for s in online}) == rounds  # fresh prompts every round
        ppo = stages[f"ppo_b{budget}"]
        assert ppo.rewards.reward_model_from == str(tmp_path / f"rm_b{budget}")
    points = online_offline.method_points(config, config.budgets[0])
    assert [step for _, step in points["online"].values()] == [steps // rounds] * rounds


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("budgets", (32, 32), r"budgets=\(32, 32\): distinct positive"),
        ("online.rounds", 1, r"online.rounds=1: online DPO needs at least 2 rounds"),
        ("budgets", (33,), r"must divide among online.rounds=2"),
        ("measure.kl_budgets", (0.0,), r"positive KL budgets"),
        ("measure.dpo_checkpoints", (3,), r"measure.dpo_checkpoints=\(3,\): increasing"),
        ("measure.ppo_checkpoints", (2,), r"the last the run's steps=4"),
        ("stages.reward_model.labels.annotator_temperature", 1.0, r"must equal stages.dpo"),
    ],  # fmt: skip
)
def test_a_bad_setting_is_refused_before_anything_runs(key, value, message, tmp_path):
    config = preset_config(config_module, **{key: value})
    with pytest.raises(ValueError, match=message):
        online_offline.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
