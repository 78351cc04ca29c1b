"""Reward model on comparisons labelled by a simulated annotator of the gold reward.

    python -m experiments.reward_model --config configs/reward_model.py:runlocal --workdir runs/rm \
        --config.labels.policy_from=runs/sft

The workflow (what it builds, evaluates and reports): alignax/workflows/reward_model.py.
"""

from alignax.cli import run_experiment
from alignax.workflows import reward_model

run = reward_model.run

if __name__ == "__main__":
    run_experiment(run)
