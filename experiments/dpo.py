"""DPO and its offline family (IPO, cDPO, SimPO, ORPO, ...) on preference pairs, by loss name.

    python -m experiments.dpo --config configs/dpo.py:runlocal --workdir runs/dpo \
        --config.init_from=runs/sft --config.labels.policy_from=runs/sft

The workflow (what it builds, evaluates and reports): alignax/workflows/preference.py.
"""

from alignax.cli import run_experiment
from alignax.workflows import preference

run = preference.run

if __name__ == "__main__":
    run_experiment(run)
