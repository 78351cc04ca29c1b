"""Process (or outcome) reward model on step-labelled solutions of an SFT policy.

    python -m experiments.process_reward --config configs/process_reward.py:runlocal \
        --workdir runs/prm --config.labels.policy_from=runs/sft_arithmetic

The workflow (what it builds, evaluates and reports): alignax/workflows/process_reward.py.
"""

from alignax.cli import run_experiment
from alignax.workflows import process_reward

run = process_reward.run

if __name__ == "__main__":
    run_experiment(run)
