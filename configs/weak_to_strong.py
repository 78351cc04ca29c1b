"""Weak-to-strong generalisation of reward models (Burns et al. 2023) on the review task, over
seeds.

    python -m experiments.weak_to_strong --config configs/weak_to_strong.py \
        --workdir runs/weak_to_strong
    python -m experiments.weak_to_strong --config configs/weak_to_strong.py:runlocal \
        --workdir runs/weak_to_strong_smoke

For every seed: pairs of the review task's generator responses, labelled by gold (the response
of higher gold reward), `pairs.num_pairs` in each of two training halves and `pairs.num_eval_pairs`
to held-out prompts. Reward models of the policy's architecture at each width of `w2s.widths`
(2 layers; the d_model of the Gao et al. study's proxies), for each initialisation of
`w2s.inits`: "pretrained" (the width's own backbone pretrained on the task's text, the stage
`stages.pretrain`, as Burns et al.'s students are pretrained models) and "scratch" (a control:
a student with no pretraining has no latent knowledge for weak labels to elicit). At each
width: a weak supervisor on half A's gold labels (every width but the largest), a ceiling on
half B's gold labels (every width but the smallest), and for every narrower width v a student
on half B labelled by the weak model of width v (its probability that the first response is
better), naive and with the auxiliary confidence loss (`confidence` alpha, warmed up over the
first `confidence_warmup` of the steps; Burns et al.'s 0.75 and 20%). Every reward model trains
`steps` steps of `batch_size` pairs at the same learning rate. Best-of-n: `pool.pool_size`
generator samples to each of `pool.num_prompts` held-out prompts.

Criteria, stated before the run (answered in results.md from 95% t-intervals over seeds of
paired differences), for each initialisation and each (weak, strong) pair of widths:
  control: the ceiling is more accurate than the weak supervisor (else PGR is undefined; a
           failing control is reported, not hidden).
  (1) Is the naive student more accurate than its weak supervisor (PGR > 0)?
  (2) Does the confidence loss make the student more accurate than the naive one?
  (3) Does best-of-n by the naive student pick responses of higher gold reward than by its
      weak supervisor at the largest n (does the student's accuracy turn into gold)?
The PGR itself, (student - weak) / (ceiling - weak), is reported with its Fieller interval,
and its trend with the size gap is read from the figure (no criterion).

Nothing was tuned on the results: the reward models' batch and learning rate are the Gao et
al. study's proxies' (32 pairs, 1e-3); their 600 steps are what the default's 30 minutes allow
(a probe of one seed from scratch at 1,000 steps, before the study, found gold-trained accuracy
rising with width, 0.67 at d = 4 to 0.83 at d = 32; 1,000 steps ran over the budget); alpha and
its warm-up are Burns et al.'s.
default: 6 seeds, widths 4, 8, 16, 32; its wall time is in its published results block
(docs/results/weak_to_strong.md). runlocal: the same pipeline at toy sizes for the test (one
seed; the pluralism smoke runs two); compile-bound.
"""

import ml_collections

from alignax.stages import stage_section
from configs import sft
from configs.common import pairs_config, stages_parent_config


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    smoke = arg == "runlocal"
    config = stages_parent_config("tiny")
    config.seeds = (0, 1, 2, 3, 4, 5)  # 3 rounds of the 2 workers
    config.workers = 2  # processes the seeds run on, one core each (1: this one, in order)
    config.stages = ml_collections.ConfigDict(
        {"pretrain": stage_section(sft.get_config("pretrain"))}
    )
    config.w2s = ml_collections.ConfigDict(
        {
            "widths": (4, 8, 16, 32),  # d_model of the reward models, ascending
            "inits": ("pretrained", "scratch"),
            "steps": 600,
            "batch_size": 32,
            "learning_rate": 1e-3,
            "weight_decay": 0.01,
            "center_coefficient": 0.01,  # eta (r_1 + r_2)^2, as the proxies' Bradley-Terry loss
            "confidence": 0.75,  # alpha of the auxiliary confidence loss
            "confidence_warmup": 0.2,  # share of the steps alpha rises from 0 over
        }
    )
    # Labelled comparisons: `num_pairs` in each training half, `num_eval_pairs` held out.
    config.pairs = pairs_config(num_pairs=4096, num_eval_pairs=4096)
    config.pool = ml_collections.ConfigDict({"num_prompts": 32, "pool_size": 512})
    if smoke:
        config.seeds = (0,)
        config.workers = 1
        config.stages.pretrain.train.update(steps=20, log_every=10, eval_every=20)
        config.stages.pretrain.sft.update(num_examples=256, num_eval_examples=32)
        config.stages.pretrain.eval.num_prompts = 8
        config.w2s.update(widths=(4, 8), steps=10)
        config.pairs.update(num_pairs=64, num_eval_pairs=64)
        config.pool.update(num_prompts=4, pool_size=8)
    config.lock()
    return config
