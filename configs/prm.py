"""Process against outcome reward models for best-of-n on multi-step arithmetic, over seeds.

    python -m experiments.prm --config configs/prm.py --workdir runs/prm
    python -m experiments.prm --config configs/prm.py:runlocal --workdir runs/prm_smoke

The task is the RLVR study's: three operations on operands 0..12 with + - *, the solution
writing out each step ("3+4*2-5=" -> "7*2-5=14-5=9"), a checker for every step and a verifier of
the answer; held-out problems are split from training ones by commutation class. For every
seed: SFT on the task's demonstrations (configs/sft.py:arithmetic, the RLVR study's 2,000
steps) -> three reward models from the SFT policy, each on the same `num_solutions` solutions
the SFT policy samples to training problems, for the same steps (configs/process_reward.py):
`prm_checker` labels every step by the step checker, `prm_monte_carlo` by the share of
`num_rollouts` rollouts from the step that reach a verified answer, `orm` only the solution, by
the verifier. Then `eval.num_samples` samples of the SFT policy at `eval.temperature` on each of
`eval.num_problems` distinct held-out problems, and best-of-n accuracy for n = 1, 2, 4, ... up to
`eval.num_samples`: each reward model's pick (the PRMs by their weakest step, the ORM by its
score of the last), majority voting over the final answers of the samples in the verifier's
form (`eval.vote_draws` random subsets per n), and the oracle (pass@n). `model`, `mesh` and
`task` apply to every stage; each stage's other settings are under `stages.<stage>`.

Criteria, stated before the run (answered in results.md from the 95% t-intervals over seeds of
the paired differences): (1) at the largest n, does the PRM on checker labels pick right more
often than the ORM (Lightman et al. 2023: yes, by a gap that widens with n)? (2) Does that gap
widen, from n = `eval.small_n` to the largest n? (3) The same for the PRM on Monte Carlo labels
(Wang et al. 2024: Math-Shepherd's automatic labels come close to human ones). (4) Does the PRM
on checker labels beat majority voting at the largest n?

The reward models' settings were not tuned for this study: 8,192 solutions and 1,200 steps of
batch 32 (a probe on one seed: 300 steps on 2,048 solutions gave held-out solution AUC 0.80 for
the PRM and 0.78 for the ORM; 1,200 steps on 8,192: 0.81 and 0.78).

default: 6 seeds; its wall time is in its published results block (docs/results/prm.md).
runlocal: the same pipeline at toy sizes for the test (one seed; the pluralism smoke runs two);
compile-bound.
"""

import ml_collections

from configs.arithmetic_studies import arithmetic_study_config, solution_reward_model

# The reward models' stages and the preset of configs/process_reward.py each runs.
REWARD_MODEL_PRESETS = {
    "prm_checker": "runlocal",
    "prm_monte_carlo": "monte_carlo",
    "orm": "outcome",
}


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    smoke = arg == "runlocal"
    config, response_tokens = arithmetic_study_config(smoke)
    for name, preset in REWARD_MODEL_PRESETS.items():
        config.stages[name] = solution_reward_model(preset, response_tokens, smoke)
    config.eval = ml_collections.ConfigDict(
        {
            "num_problems": 64,  # distinct held-out problems
            "num_samples": 1024,  # the pool per problem; n runs 1, 2, 4, ... up to it
            "temperature": 1.0,
            "max_new_tokens": response_tokens,
            "vote_draws": 128,  # random n-subsets per problem and n for majority voting
            "small_n": 8,  # where the widening of a gap is measured from
        }
    )
    if smoke:
        config.eval.update(num_problems=8, num_samples=16, vote_draws=16, small_n=2)
    config.lock()
    return config
