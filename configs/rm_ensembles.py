"""Reward-model ensembles against over-optimisation in best-of-n (Coste et al. 2023), over seeds.

    python -m experiments.rm_ensembles --config configs/rm_ensembles.py --workdir runs/ensembles
    python -m experiments.rm_ensembles --config configs/rm_ensembles.py:runlocal \
        --workdir runs/ensembles_smoke

The setting is the PRM study's (configs/prm.py), where a single outcome reward model
over-optimises: best-of-n by it picks right less often as n grows. For every seed: SFT on
three-step arithmetic (the RLVR study's 2,000 steps) -> `ensemble.size` outcome reward models
from the SFT policy (configs/process_reward.py:outcome), member m with its own seed, so its own
sample of `num_solutions` solutions to training problems and its own value-head initialisation
(Coste et al.'s members differ by seed; these differ by data too). Then `eval.num_samples`
samples of the SFT policy on each of `eval.num_problems` distinct held-out problems, scored by
every member, and best-of-n accuracy for n = 1, 2, 4, ... up to `eval.num_samples` for a single
member (the mean over members), the mean of the members' scores, the worst case (WCO: their
minimum) and the uncertainty-weighted (UWO: mean less `ensemble.uwo_penalty` times their
variance), each member's scores standardised over the pool first (its logit of the answer
being right; Coste et al. normalise each member the same way), beside the oracle (pass@n).
Best-of-n's KL to the policy, log n - (n - 1) / n, is the same for every selector, so equal n is
equal KL.

Criteria, stated before the run (answered in results.md from the 95% t-intervals over seeds of
paired differences): (1) at the largest n, does each ensemble pick right more often than a
single member? (2) Does each ensemble lose less accuracy than a single member from its peak
over n to the largest n (does it remove or delay the turn-over)? (3) What does each cost in
peak accuracy (its peak over n against a single member's)?

The members' settings are the PRM study's outcome reward model's; `uwo_penalty` 0.5 was not
tuned. default: 6 seeds of 4 members; its wall time is in its published results block
(docs/results/rm_ensembles.md). runlocal: the same pipeline at toy sizes for the test (one seed;
the pluralism smoke runs two); compile-bound.
"""

import ml_collections

from configs.arithmetic_studies import arithmetic_study_config, solution_reward_model


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    smoke = arg == "runlocal"
    config, response_tokens = arithmetic_study_config(smoke)
    config.stages.member = solution_reward_model("outcome", response_tokens, smoke)
    config.ensemble = ml_collections.ConfigDict(
        {
            "size": 4,  # members, each a stage <seed>/member<m> with seed 1000 * seed + m
            "uwo_penalty": 0.5,  # UWO: mean - uwo_penalty * variance of the standardised scores
        }
    )
    config.eval = ml_collections.ConfigDict(
        {
            "num_problems": 64,  # distinct held-out problems
            "num_samples": 1024,  # the pool per problem; n runs 1, 2, 4, ... up to it
            "temperature": 1.0,
            "max_new_tokens": response_tokens,
        }
    )
    if smoke:
        config.ensemble.size = 2
        config.eval.update(num_problems=8, num_samples=16)
    config.lock()
    return config
