"""The ensemble study's PPO half: its runs, and its checks before it runs (the end-to-end run:
tests/test_notebooks.py)."""

import pytest

from configs import rm_ensembles_ppo as config_module
from experiments import rm_ensembles_ppo
from tests.helpers import preset_config


def test_every_combination_is_paired_with_the_single_model_at_its_beta():
    config = preset_config(config_module, "default")
    runs = rm_ensembles_ppo.ppo_runs(config)
    assert len(runs) == len(rm_ensembles_ppo.REWARDS) * len(config.betas) == 8
    assert runs["ppo_wco_beta0.05"] == ("wco", 0.05)
    points = rm_ensembles_ppo.points(config)
    assert len(points) == len(runs) * len(config.measure.checkpoints)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ensemble.size", 1, r"ensemble.size=1: an ensemble needs 2 members"),
        ("rewards", ("wco", "uwo"), r"rewards=\('wco', 'uwo'\): 'single'"),
        ("rewards", ("single", "max"), r"at least one of"),
        ("betas", (0.0, 0.0), r"betas=\(0.0, 0.0\): distinct"),
        ("betas", (-0.1,), r"none negative"),
        ("stages.ppo.ppo.kl_control", "adaptive", r"kl_control='adaptive': must be 'fixed'"),
        ("measure.kl_budgets", (0.0,), r"positive KL budgets"),
        ("measure.checkpoints", (2, 3), r"measure.checkpoints=\(2, 3\): increasing multiples"),
        ("stages.ppo.train.keep_checkpoints", 1, r"keep_checkpoints=1 keeps fewer"),
    ],  # fmt: skip
)
def test_a_bad_setting_is_refused_before_anything_runs(key, value, message, tmp_path):
    config = preset_config(config_module, **{key: value})
    with pytest.raises(ValueError, match=message):
        rm_ensembles_ppo.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
