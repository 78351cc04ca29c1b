"""Length hacking and its controls in best-of-n (Singhal et al. 2023; Park et al. 2024), over seeds.

    python -m experiments.length_bias --config configs/length_bias.py --workdir runs/length_bias
    python -m experiments.length_bias --config configs/length_bias.py:runlocal \
        --workdir runs/length_bias_smoke

Annotators with a known length bias: each prefers by its utility, the task's gold reward plus
`strength` times the response's length z-score (its length in tokens, standardised over the
training responses), Bradley-Terry at `annotator_temperature` in units of gold's spread (the
studies' simulated annotators). Strength 1 weighs one standard deviation of length (~4 tokens) as
much as one of gold. The generator's own gold falls slightly with length (responses that reach
the length cap lose the termination term), so length bought is gold lost.

Per seed, every reward model (the policy's architecture at width `rm.width`, from scratch) in one
vmapped run on the same pairs of generator responses to training prompts: one on gold labels (an
unbiased annotator: the control), and for each strength one on the biased annotator's labels and
one on the same labels fitted beside a length covariate (the Bradley-Terry margin r_1 - r_2 +
c x, x the length z-score difference, c learnt; the model's reward alone is used: a linear length
head in the spirit of ODIN, Chen et al. 2024, without its decorrelation term). The labels of
every annotator come from the same uniform draws, so they differ only where the utilities do.
Then best-of-n on a pool of generator samples to held-out prompts by each model, by the biased
model with its length slope (least squares on the training responses) subtracted post hoc (a
length penalty whose weight is read off the data, not tuned), by the annotator's utility and by
gold.

Criteria, stated before the run (answered in results.md, per strength, from 95% t-intervals
over seeds of paired differences at the largest n):
  (1) Does the biased-label model's score correlate with length more than the gold-label
      model's (within prompts, over the pool)?
  (2) Does best-of-n by the biased-label model reach lower gold than by the gold-label model?
  (3) Does subtracting its length slope post hoc raise its gold?
  (4) Does fitting it beside a length covariate raise its gold?
  (5) Is the length-controlled win rate of its picks against a random pool sample (the biased
      judge's preferences regressed on the length difference and read at 0, as length-controlled
      AlpacaEval) nearer the unbiased judge's win rate than the raw win rate is?

Nothing was tuned: the reward models' settings are the pluralism study's. default: 6 seeds; its
wall time is in its published results block (docs/results/length_bias.md). runlocal: the same
pipeline at toy sizes for the test (2 seeds, so intervals exist); compile-bound.
"""

import ml_collections

from configs.common import stages_parent_config


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    config = stages_parent_config("tiny")
    config.seeds = (0, 1, 2, 3, 4, 5)  # 3 rounds of the 2 workers
    config.workers = 2  # processes the seeds run on, one core each (1: this one, in order)
    config.bias = ml_collections.ConfigDict(
        {
            # The annotators' length biases: utility = gold + strength * (length z-score).
            "strengths": (0.5, 1.0, 2.0),
            "annotator_temperature": 0.5,
        }
    )
    config.rm = ml_collections.ConfigDict(
        {
            "width": 32,  # d_model of every reward model
            "steps": 1000,
            "batch_size": 32,
            "learning_rate": 1e-3,
            "weight_decay": 0.01,
            "center_coefficient": 0.01,
        }
    )
    config.pairs = ml_collections.ConfigDict({"num_pairs": 8192, "num_eval_pairs": 2048})
    # num_references: pool samples per prompt each pick is compared with for the win rates.
    config.pool = ml_collections.ConfigDict(
        {"num_prompts": 32, "pool_size": 512, "num_references": 64}
    )
    if arg == "runlocal":
        config.seeds = (0, 1)
        config.workers = 1
        config.bias.strengths = (1.0,)
        config.rm.update(width=8, steps=10)
        config.pairs.update(num_pairs=128, num_eval_pairs=64)
        config.pool.update(num_prompts=4, pool_size=8, num_references=4)
    config.lock()
    return config
