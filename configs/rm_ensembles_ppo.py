"""Reward-model ensembles against over-optimisation in PPO (Coste et al. 2023), over seeds.

    python -m experiments.rm_ensembles_ppo --config configs/rm_ensembles_ppo.py \
        --workdir runs/ensembles_ppo
    python -m experiments.rm_ensembles_ppo --config configs/rm_ensembles_ppo.py:runlocal \
        --workdir runs/ensembles_ppo_smoke

The PPO half of the ensemble study (its best-of-n half: configs/rm_ensembles.py), in the
over-optimisation study's PPO setting (configs/overoptimization.py: PPO at beta = 0 against a
small reward model of noisy labels, where gold falls while the proxy climbs). Per seed:
pretrain -> SFT (the DPO frontier study's trimmed stages) -> a reward model of width
`reward_width` on pairs of the SFT policy's samples labelled by the gold annotator with a quarter
of the labels flipped (stage reward_model), and an ensemble of `ensemble.size` such models
trained together on the same pairs, each from its own initialisation (stage reward_ensemble) ->
PPO against each of `rewards`: the single model, and the ensemble combined by its members'
mean, their minimum (WCO) and their mean less `ensemble.uwo_penalty` times their variance (UWO),
each member standardised on the SFT policy's samples first (as Coste et al. normalise theirs),
every one at each KL coefficient of `betas` (0, and a small fixed penalty). Every run's policy at
the steps of `measure.checkpoints` and the SFT policy answer one fresh draw of
`measure.num_prompts` held-out prompts with one sampling key: gold, length, KL to the SFT policy
and diversity.

Criteria, stated before the run (answered in results.md from 95% t-intervals over seeds of
paired differences, each combination minus the single model at the same KL coefficient):
(1) gold at the end of the run: higher? (2) gold's fall from its peak over the run (the SFT
policy included) to the end, the peak chosen on half of the fresh prompts and both read on the
other half, both ways: smaller (does the combination remove or delay the turn-over)? (3) the
peak, read the same way: what does the combination cost in peak gold? (4) gold at equal KL,
each run's line through its measured policies read at `measure.kl_budgets`: higher?

Nothing was tuned: the PPO settings are the over-optimisation study's (learning rate 1e-4,
fixed KL coefficient), its penalised run's 0.05, and `uwo_penalty` 0.5 is the best-of-n half's.
default: 6 seeds; its wall time is in its published results block
(docs/results/rm_ensembles_ppo.md). runlocal: the same pipeline at toy sizes for the test (one
seed; the pluralism smoke runs two); compile-bound.
"""

import ml_collections

from alignax.proxies import reward_model_config
from alignax.stages import stage_section
from configs import ppo, reward_model, sft
from configs.common import (
    shrink_reward_model_and_ppo_stages,
    shrink_rlhf_base_stages,
    stages_parent_config,
)


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    config = stages_parent_config("tiny")
    config.seeds = (0, 1, 2, 3, 4, 5)  # 3 rounds of the 2 workers
    config.workers = 2  # processes the seeds run on, one core each (1: this one, in order)
    config.ensemble = ml_collections.ConfigDict(
        {
            "size": 4,  # members of stage reward_ensemble, trained in one stacked step
            "uwo_penalty": 0.5,  # UWO: mean - uwo_penalty * variance of the standardised scores
        }
    )
    # What PPO optimises: the single model, and the ensemble's mean, worst case (WCO) and
    # uncertainty-weighted combination (UWO); each at every fixed KL coefficient of `betas`.
    config.rewards = ("single", "mean", "wco", "uwo")
    config.betas = (0.0, 0.05)
    config.stages = ml_collections.ConfigDict(
        {
            "pretrain": stage_section(sft.get_config("pretrain")),
            "sft": stage_section(sft.get_config("runlocal")),
            # The single reward model; the ensemble is the same with reward.ensemble_size.
            "reward_model": stage_section(reward_model.get_config("noisy"), own=("model",)),
            # The template of every PPO run: the study sets its reward and KL coefficient.
            "ppo": stage_section(ppo.get_config("runlocal")),
        }
    )
    stages = config.stages
    stages.pretrain.train.update(steps=300, eval_every=300)
    stages.sft.train.update(steps=150, eval_every=150)
    # The over-optimisation study's d8 proxy: width 8, from scratch, noisy labels.
    stages.reward_model.model = reward_model_config(config.model, 8)
    stages.reward_model.pairs.update(num_pairs=2048, num_eval_pairs=256)
    stages.reward_model.train.update(steps=256, eval_every=256, checkpoint_every=256)
    stages.ppo.rewards.value_init = "policy"
    stages.ppo.ppo.kl_control = "fixed"
    stages.ppo.optimizer.learning_rate = 1e-4
    stages.ppo.eval.num_prompts = 64
    stages.ppo.train.update(
        steps=64, log_every=8, eval_every=16, checkpoint_every=8, keep_checkpoints=8
    )
    config.measure = ml_collections.ConfigDict(
        {
            # The steps every PPO run's policy is measured at: its trajectory; the
            # last is stages.ppo.train.steps (every one a kept checkpoint).
            "checkpoints": (8, 16, 24, 32, 40, 48, 56, 64),
            "kl_budgets": (2.0, 4.0, 8.0, 16.0, 24.0),  # nats: where runs are compared at equal KL
            "num_prompts": 512,  # of the fresh draw every measured policy answers
            "max_new_tokens": 32,
        }
    )
    if arg == "runlocal":
        config.seeds = (0,)
        config.workers = 1
        config.ensemble.size = 2
        config.rewards = ("single", "wco")
        config.betas = (0.0,)
        shrink_rlhf_base_stages(stages)
        stages.reward_model.pairs.num_pairs = 64
        shrink_reward_model_and_ppo_stages(stages)
        config.measure.update(checkpoints=(2, 4), num_prompts=16)
    config.lock()
    return config
