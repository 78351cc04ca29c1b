"""End-to-end online runs on the review task from a fresh policy (enough to exercise the wiring,
and no upstream stage to wait for): GRPO scored by the task's gold reward, and online DPO's
rounds."""

import json

import jax
import numpy as np
import pytest

from alignax.metrics import read_metrics
from alignax.models import build_model
from alignax.stages import save_stage
from alignax.workflows import online
from configs import grpo as grpo_config
from configs import online_dpo as online_dpo_config
from experiments import online_dpo
from tests.helpers import preset_config, short_run

pytestmark = pytest.mark.slow


def test_grpo_runs_on_the_review_task_with_its_gold_reward(tmp_path):
    """The GRPO experiment on the review task, by preset alone (from a fresh policy, which is
    enough to exercise the wiring): the group is scored by the review task's continuous gold
    reward, not a 0/1 verifier, and the policy moves away from its reference."""
    config = preset_config(
        grpo_config,
        "review",
        **short_run(
            **{
                "train.steps": 3,
                "train.batch_size": 8,
                "rollout.group_size": 4,
                "rollout.max_new_tokens": 8,
                "rollout.num_prompts": 64,
                "eval.num_prompts": 16,
            }
        ),
    )
    summary = online.run(config, tmp_path)
    metrics = [m for m in read_metrics(tmp_path) if "proxy/mean" in m]
    rewards = np.array([m["proxy/mean"] for m in metrics]) * 32
    assert np.any(np.abs(rewards - np.round(rewards)) > 1e-3)  # not a count of exact answers
    assert metrics[-1]["kl/sequence"] != 0 and summary["steps"] == 3
    assert np.isfinite([summary["reward_greedy"], summary["reward_sampled"]]).all()


def test_online_dpo_rounds_start_from_and_refer_to_the_previous_policy(tmp_path, capsys):
    """Two rounds from a fresh policy (enough for the wiring): round 2 samples its pairs from,
    starts from and is referenced to round 1's policy; every policy is evaluated on the same
    held-out prompts; a rerun skips the finished rounds and reproduces the table."""
    config = preset_config(
        online_dpo_config,
        **{
            "rounds": 2,
            "dpo.pairs.num_pairs": 64,
            "dpo.pairs.num_eval_pairs": 32,
            "dpo.eval.num_prompts": 16,
            "dpo.eval.max_new_tokens": 8,
            "dpo.labels.max_new_tokens": 8,
            "dpo.train.steps": 3,
            "dpo.train.batch_size": 16,
            "eval.num_prompts": 16,
            "eval.max_new_tokens": 8,
        },
    )
    start = tmp_path / "start"
    model = build_model(config.model, heads=("lm",))
    save_stage(start, config.model, model.init(jax.random.key(0)), step=0)
    with config.unlocked():
        config.init_from = str(start)
    summary = online_dpo.run(config, tmp_path / "online")
    round2 = json.loads((tmp_path / "online" / "round2" / "config.json").read_text())
    assert (
        round2["init_from"]
        == round2["labels"]["policy_from"]
        == str(tmp_path / "online" / "round1")
    )
    assert round2["seed"] == config.seed + 1
    rows = json.loads((tmp_path / "online" / "results.json").read_text())["rounds"]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[0]["kl_to_start"] == 0 and rows[0]["kl_to_reference"] == 0
    # Round 1's reference is the start; round 2's is round 1's policy, which has moved.
    assert rows[1]["kl_to_reference"] == rows[1]["kl_to_start"] != 0
    assert rows[2]["kl_to_reference"] != rows[2]["kl_to_start"]
    capsys.readouterr()
    again = online_dpo.run(config, tmp_path / "online")
    assert {k: v for k, v in again.items() if not k.startswith("seconds")} == {
        k: v for k, v in summary.items() if not k.startswith("seconds")
    }
    assert "=== round" not in capsys.readouterr().out
