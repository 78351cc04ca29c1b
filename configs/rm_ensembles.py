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
(docs/results/rm_ensembles.md). runlocal: the same pipeline at toy sizes for the test (2 seeds,
so intervals exist); compile-bound.
"""

import ml_collections

from alignax.stages import stage_section
from alignax.tasks import ArithmeticTask
from configs import process_reward, sft
from configs.common import stages_parent_config


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    config = stages_parent_config("tiny", task="arithmetic")
    config.task.update(num_steps=3, max_operand=12, operators="+-*")
    response_tokens = ArithmeticTask(config.task).answer_len + 1  # the longest solution + EOS
    config.seeds = (0, 1, 2, 3, 4, 5)  # 3 rounds of the 2 workers
    config.workers = 2  # processes the seeds run on, one core each (1: this one, in order)
    config.stages = ml_collections.ConfigDict(
        {
            "sft": stage_section(sft.get_config("arithmetic")),
            "member": stage_section(process_reward.get_config("outcome")),
        }
    )
    config.stages.sft.train.update(steps=2000, eval_every=1000)
    config.stages.sft.eval.max_new_tokens = response_tokens
    member = config.stages.member
    member.labels.max_new_tokens = response_tokens
    member.process.num_solutions = 8192
    member.train.update(steps=1200, eval_every=600, checkpoint_every=600)
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
    if arg == "runlocal":
        config.seeds = (0, 1)
        config.workers = 1
        config.ensemble.size = 2
        config.stages.sft.train.update(steps=60, log_every=20, eval_every=60)
        config.stages.sft.sft.update(num_examples=512, num_eval_examples=64)
        config.stages.sft.eval.num_prompts = 32
        member.process.update(num_solutions=64, num_eval_solutions=32)
        member.train.update(steps=4, batch_size=8, log_every=2, eval_every=4)
        member.train.checkpoint_every = 4
        config.eval.update(num_problems=8, num_samples=16)
    config.lock()
    return config
