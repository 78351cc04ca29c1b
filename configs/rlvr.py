"""RLVR on multi-step arithmetic: pass@k up to k = 256 before and after GRPO, over seeds.

    python -m experiments.rlvr --config configs/rlvr.py --workdir runs/rlvr
    python -m experiments.rlvr --config configs/rlvr.py:runlocal --workdir runs/rlvr_smoke

The task: three operations on operands 0..12 with + - *, evaluated left to right, the solution
writing out each step ("3+4*2-5=" -> "7*2-5=14-5=9"); the verifier checks the answer after the
last "=" (alignax/tasks/arithmetic.py). Problems are split by commutation class, so no held-out
problem's commuted twin is trained on. For every seed: SFT on the task's demonstrations
(configs/sft.py:arithmetic) -> GRPO from it with the verifier (configs/grpo.py) -> for both
policies, `eval.num_samples` samples at temperature 1 on each of `eval.num_problems` distinct
held-out problems, pass@k for `eval.ks` with the unbiased estimator, coverage, greedy accuracy,
the per-problem solvable sets, and pass@k at `eval.sweep_temperatures` from
`eval.sweep_samples` samples; beside them a guesser that draws answers from the answers of
`eval.answer_draws` training problems. `model`, `mesh` and `task` apply to both stages; each
stage's other settings are under `stages.<stage>` (e.g. --config.stages.grpo.train.steps=800).
Every `max_new_tokens` must cover the task's longest solution and its EOS (checked).

The stages' settings were not tuned on this task: SFT as configs/sft.py:arithmetic with 4x its
steps (a 2,000-step probe on one seed gave pass@1 0.34 and 512-sample coverage 0.96 on held-out
problems: well below 0.5 and not at the ceiling), GRPO as configs/grpo.py:runlocal (32 prompts x 8
samples a step, learning rate 3e-4) for 300 steps.

default: 6 seeds; its wall time is in its published results block (docs/results/rlvr.md).
runlocal: the same pipeline at toy sizes for the test (one seed; the pluralism smoke runs
two); compile-bound.
"""

import ml_collections

from alignax.stages import stage_section
from configs import grpo
from configs.arithmetic_studies import arithmetic_study_config


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    config, response_tokens = arithmetic_study_config(smoke=arg == "runlocal")
    config.stages.grpo = stage_section(grpo.get_config("runlocal"))
    config.stages.grpo.rollout.max_new_tokens = response_tokens
    # 300 steps (the preset's 400 less a quarter) keep the default within 30 minutes.
    config.stages.grpo.train.update(steps=300, eval_every=300, checkpoint_every=100)
    config.eval = ml_collections.ConfigDict(
        {
            "num_problems": 64,  # distinct held-out problems
            "num_samples": 1024,  # n per problem at temperature 1: 4 x max(ks)
            "ks": (1, 2, 4, 8, 16, 32, 64, 128, 256),
            "max_new_tokens": response_tokens,
            "sweep_temperatures": (0.6, 1.3),  # beside temperature 1
            "sweep_samples": 256,  # n per problem at each of them
            "answer_draws": 65536,  # training problems whose answers the guesser draws from
        }
    )
    if arg == "runlocal":
        config.stages.grpo.train.update(
            steps=4, log_every=2, eval_every=4, checkpoint_every=4, batch_size=8
        )
        config.stages.grpo.rollout.num_prompts = 64
        config.stages.grpo.eval.num_prompts = 32
        config.eval.update(
            num_problems=16, num_samples=32, ks=(1, 2, 4, 8, 16), sweep_samples=16,
            answer_draws=4096,
        )  # fmt: skip
    config.lock()
    return config
