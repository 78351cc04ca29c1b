"""Pluralistic preferences (MaxMin-RLHF, Chakraborty et al. 2024) on the review task, over seeds.

    python -m experiments.pluralism --config configs/pluralism.py --workdir runs/pluralism
    python -m experiments.pluralism --config configs/pluralism.py:runlocal \
        --workdir runs/pluralism_smoke

Two groups of annotators whose gold rewards weigh the task's principles (alignax/feedback/
principles.py: the gold reward's own terms) differently: the majority (70% of the annotators)
has the task's gold weights; the minority (30%) weighs fluency, non-repetition and termination
the same but prefers critical reviews (sentiment weight -1). Each training pair of generator
responses is labelled by one of `num_annotators` annotators drawn at random (Bradley-Terry on
its group's reward at `annotator_temperature`, in units of the gold reward's spread, as the
studies' simulated annotators). Reward models (the policy's architecture at width `rm.width`,
from scratch): pooled on every label, one per group on its labels (the group known), and a
two-class Bradley-Terry mixture fitted by `em.rounds` rounds of EM over annotators (the groups
unknown). Then best-of-n on a pool of generator samples to held-out prompts, each group's gold
standardised over the pool.

Criteria, stated before the run (answered in results.md from 95% t-intervals over seeds of
paired differences at the largest n):
  control: each group's own model serves that group better than the other group's model does
           (else the groups do not differ where best-of-n can tell).
  (1) Does the pooled model under-serve the minority (its gold below the minority's own
      model's)?
  (2) Does MaxMin over the group models raise the worst group's gold over the pooled model?
  (3) Does MaxMin over the mixture's classes, with no group labels, do the same?

Nothing was tuned: the reward models' steps, batch and learning rate are the weak-to-strong
study's at width 32 with 1,000 steps; 3 EM rounds. default: 6 seeds; its wall time is in its
published results block (docs/results/pluralism.md). runlocal: the same pipeline at toy sizes
for the test (2 seeds, so intervals exist); compile-bound.
"""

import ml_collections

from configs.common import pairs_config, scratch_reward_models_config, stages_parent_config


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    config = stages_parent_config("tiny")
    config.seeds = (0, 1, 2, 3, 4, 5)  # 3 rounds of the 2 workers
    config.workers = 2  # processes the seeds run on, one core each (1: this one, in order)
    config.population = ml_collections.ConfigDict(
        {
            "names": ("majority", "minority"),
            "shares": (0.7, 0.3),
            "principles": ("sentiment", "non_repetition", "fluency", "termination"),
            # One weight per principle and group: the majority's are the task's gold weights.
            "weights": ((1.0, 2.0, 1.0, 2.0), (-1.0, 2.0, 1.0, 2.0)),
            "num_annotators": 50,
            "annotator_temperature": 0.5,
        }
    )
    config.rm = scratch_reward_models_config()
    config.pairs = pairs_config(num_pairs=8192, num_eval_pairs=2048)
    config.em = ml_collections.ConfigDict({"rounds": 3})
    config.pool = ml_collections.ConfigDict({"num_prompts": 32, "pool_size": 512})
    if arg == "runlocal":
        config.seeds = (0, 1)
        config.workers = 1
        config.population.num_annotators = 10
        config.rm.update(width=8, steps=10)
        config.pairs.update(num_pairs=128, num_eval_pairs=64)
        config.em.rounds = 1
        config.pool.update(num_prompts=4, pool_size=8)
    config.lock()
    return config
