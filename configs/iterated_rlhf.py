"""Iterated RLHF: a reward model re-trained on fresh comparisons of the current policy's samples
against one fixed reward model, at equal labels (the seed's "periodic re-collection of
preference data using the current policy"; Bai et al. 2022's iterated online RLHF), over seeds.

    python -m experiments.iterated_rlhf --config configs/iterated_rlhf.py \
        --workdir runs/iterated_rlhf
    python -m experiments.iterated_rlhf --config configs/iterated_rlhf.py:runlocal \
        --workdir runs/iterated_rlhf_smoke

In the reward-model ensemble study's PPO setting (configs/rm_ensembles_ppo.py: a small reward
model of noisy labels, where gold falls at beta = 0 while the proxy climbs). Per seed:
pretrain -> SFT, then at each KL coefficient of `betas` two ways to spend the same labels and
PPO iterations:
  - fixed: a reward model on `stages.reward_model.pairs.num_pairs` pairs of the SFT policy's
    samples (stage reward_model), PPO against it for `stages.ppo.train.steps` iterations
    (stage ppo_fixed_beta<b>);
  - iterated: `rounds` rounds; round r labels pairs.num_pairs / rounds fresh pairs of the
    current policy's samples (round 1: the SFT policy's; round r > 1: round r - 1's PPO
    policy's), continues the previous round's reward model on them for steps / rounds steps
    (stage rm_beta<b>_r<r>), and continues PPO from the current policy against it for
    train.steps / rounds iterations (stage ppo_iterated_beta<b>_r<r>), its KL penalty still
    to the SFT policy (`reference_from`).
Both arms label pairs with the same annotator (the gold reward's Bradley-Terry annotator with a
quarter of the labels flipped) and train their reward models for the same number of steps.
Every PPO policy at the steps of `measure.checkpoints` (the iterated arm's rounds at their own
steps, placed at the iteration they end) and the SFT policy answer one fresh draw of
`measure.num_prompts` held-out prompts with one sampling key: gold, length, KL to the SFT policy
and diversity.

Criteria, stated before the run (answered in results.md from 95% t-intervals over seeds of
paired differences, iterated minus fixed at the same KL coefficient): (1) gold at the end of the
run: higher? (2) gold's fall from its peak over the run (the SFT policy included) to the end,
the peak chosen on half of the fresh prompts and both read on the other half, both ways:
smaller? (3) the peak, read the same way: higher? (4) gold at equal KL, each arm's line through
its measured policies read at `measure.kl_budgets`: higher?

Nothing was tuned: the reward model, PPO and measurement settings are the ensemble study's PPO
half's; the rounds divide its pairs, reward-model steps and PPO iterations. Each round restarts
the optimizers (the reward model's with its share of the warmup), PPO's value model from the
round's policy, and normalises the round's reward on the round's starting policy's samples.
default: 6 seeds; its wall time is in its published results block
(docs/results/iterated_rlhf.md). runlocal: the same pipeline at toy sizes for the test (one
seed); compile-bound.
"""

import ml_collections

from configs.overoptimized_ppo import overoptimized_ppo_config


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    config = overoptimized_ppo_config(smoke=arg == "runlocal")
    # The fixed arm runs stages.reward_model and stages.ppo; the iterated arm's rounds divide
    # their pairs, steps and iterations among them. The fixed arm's PPO is measured at every
    # step of measure.checkpoints, each round at those at or below its length.
    config.rounds = 4  # of the iterated arm: each re-collects, re-trains and continues PPO
    config.betas = (0.0, 0.05)
    if arg == "runlocal":
        config.rounds = 2
        config.betas = (0.0,)
    config.lock()
    return config
