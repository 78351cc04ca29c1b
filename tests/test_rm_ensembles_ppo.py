"""The ensemble study's PPO half: its cross-fitted peak and fall on trajectories whose answers
are known, and its checks before it runs (the end-to-end run: tests/test_notebooks.py)."""

import numpy as np
import pytest

from configs import rm_ensembles_ppo as config_module
from experiments import rm_ensembles_ppo
from tests.helpers import preset_config


def test_a_steady_rise_and_fall_gives_its_peak_and_fall():
    gold_CxP = np.repeat([[0.0], [2.0], [1.5], [0.5]], 6, axis=1)  # start, peak, end
    got = rm_ensembles_ppo.peak_and_fall(gold_CxP)
    assert got == pytest.approx({"peak": 2.0, "fall": 1.5})


def test_the_peak_is_chosen_on_one_half_and_read_on_the_other():
    """Even prompts peak at row 1 and odd ones at row 2: each half's choice is read where it is
    not the best, so the cross-fitted peak lies below both halves' own maxima."""
    gold_CxP = np.zeros((4, 4))
    gold_CxP[1, 0::2], gold_CxP[1, 1::2] = 3.0, 1.0
    gold_CxP[2, 0::2], gold_CxP[2, 1::2] = 1.0, 3.0
    got = rm_ensembles_ppo.peak_and_fall(gold_CxP)
    assert got["peak"] == pytest.approx(1.0)  # each half's choice read on the other: 1
    assert got["fall"] == pytest.approx(1.0)  # ... less the end's 0
    # A run that only falls peaks at its start.
    flat = rm_ensembles_ppo.peak_and_fall(np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert flat == pytest.approx({"peak": 1.0, "fall": 1.0})


def test_every_combination_is_paired_with_the_single_model_at_its_beta():
    config = preset_config(config_module, betas=(0.0, 0.05))
    runs = rm_ensembles_ppo.ppo_runs(config)
    assert len(runs) == len(rm_ensembles_ppo.REWARDS) * 2
    assert runs["ppo_wco_beta0.05"] == ("wco", 0.05)
    points = rm_ensembles_ppo.points(config)
    assert len(points) == len(runs) * len(config.measure.checkpoints)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ensemble.size", 1, r"ensemble.size=1: an ensemble needs 2 members"),
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
