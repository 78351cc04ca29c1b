"""Supervised fine-tuning (and pretraining): next-token loss on the scored tokens.

    python -m experiments.sft --config configs/sft.py:runlocal --workdir runs/sft
    python -m experiments.sft --config configs/sft.py:pretrain --workdir runs/pretrain

The workflow (what it builds, evaluates and reports): alignax/workflows/sft.py.
"""

from alignax.cli import run_experiment
from alignax.workflows import sft

run = sft.run

if __name__ == "__main__":
    run_experiment(run)
