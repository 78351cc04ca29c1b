"""GRPO / Dr.GRPO / RLOO, XPO (`configs/grpo.py:xpo`) or Nash-MD (`:nash_md`), with a task's
own reward: the arithmetic task's exact-match verifier (RLVR), or the review task's gold reward
(`configs/grpo.py:review`).

    python -m experiments.sft --config configs/sft.py:arithmetic --workdir runs/arith_sft
    python -m experiments.grpo --config configs/grpo.py:runlocal --workdir runs/grpo \
        --config.init_from=runs/arith_sft

The workflow (what it builds, evaluates and reports): alignax/workflows/online.py.
"""

from alignax.cli import run_experiment
from alignax.workflows import online

run = online.run

if __name__ == "__main__":
    run_experiment(run)
