"""The over-optimisation experiment's RL seeds: the plan pairs run s with the proxy of seed s, and
the seeds' curves average point by point with SEs over prompts and seeds."""

from pathlib import Path

import numpy as np
import pytest

from configs import overoptimization as config_module
from experiments import overoptimization


def test_rl_average_by_hand():
    a = [
        {"step": 0, "kl": 0.0, "gold": 0.0, "gold_se": 0.0, "proxy": 0.0},
        {"step": 10, "kl": 4.0, "gold": 1.0, "gold_se": 0.3, "proxy": 2.0},
    ]
    b = [
        {"step": 0, "kl": 0.0, "gold": 0.0, "gold_se": 0.0, "proxy": 0.0},
        {"step": 10, "kl": 6.0, "gold": 0.0, "gold_se": 0.4, "proxy": 3.0},
    ]
    start, end = overoptimization.rl_average([a, b])
    assert start["gold"] == 0 and start["gold_se"] == 0
    assert (end["step"], end["kl"], end["proxy"], end["gold"]) == (10, 5.0, 2.5, 0.5)
    # prompt variance: (0.09 + 0.16) / 2; between seeds: var([1, 0], ddof=1) / 2 = 0.25
    assert end["gold_se"] == pytest.approx(np.sqrt(0.125 + 0.25))
    assert end["gold_seeds"] == [1.0, 0.0]
    with pytest.raises(ValueError, match="differ in length"):
        overoptimization.rl_average([a, b[:1]])


def test_rl_plan_pairs_each_seed_with_its_own_proxy(monkeypatch, tmp_path):
    config = config_module.get_config()
    jobs = []
    monkeypatch.setattr(overoptimization, "run_jobs", lambda fn, j, workers: jobs.extend(j))
    proxies = {
        (name, s): tmp_path / f"{name}_s{s}"
        for name in config.rl.proxies
        for s in range(config.proxies.seeds)
    }
    runs = overoptimization.run_rl(config, tmp_path / "sft", proxies, tmp_path)
    assert len(jobs) == len(runs) * config.rl.seeds == 12
    for key, dirs in runs.items():
        name, beta = key.split(", beta ")
        for s, run_dir in enumerate(dirs):
            ppo_config, job_dir = next(j for j in jobs if j[1] == run_dir)
            assert Path(ppo_config.rewards.reward_model_from) == proxies[(name, s)]
            assert ppo_config.seed == config.seed + s
            assert ppo_config.ppo.kl_coef == float(beta)
    with config.unlocked():
        config.rl.seeds = config.proxies.seeds + 1
    with pytest.raises(ValueError, match=r"rl\.seeds=4 needs as many proxy seeds"):
        overoptimization.run_rl(config, tmp_path / "sft", proxies, tmp_path)
