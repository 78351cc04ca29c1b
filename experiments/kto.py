"""KTO and the other unpaired losses (APO-zero unpaired, BCO) on desirable / undesirable
examples, by loss name.

    python -m experiments.kto --config configs/kto.py:runlocal --workdir runs/kto \
        --config.init_from=runs/sft --config.labels.policy_from=runs/sft

The workflow (what it builds, evaluates and reports): alignax/workflows/unpaired.py.
"""

from alignax.cli import run_experiment
from alignax.workflows import unpaired

run = unpaired.run

if __name__ == "__main__":
    run_experiment(run)
