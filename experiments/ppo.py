"""RLHF with PPO: KV-cache rollouts, a reward model (or the task's own reward), a per-token KL
penalty to the SFT policy, GAE, clipped policy and value losses, optional PPO-ptx.

    python -m experiments.ppo --config configs/ppo.py:runlocal --workdir runs/ppo \
        --config.init_from=runs/sft --config.rewards.reward_model_from=runs/rm

The workflow (what it builds, evaluates and reports): alignax/workflows/ppo.py.
"""

from alignax.cli import run_experiment
from alignax.workflows import ppo

run = ppo.run

if __name__ == "__main__":
    run_experiment(run)
