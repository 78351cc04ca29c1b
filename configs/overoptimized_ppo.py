"""The PPO setting in which a small reward model of noisy labels is over-optimised, shared by the
studies of cures for it (configs/rm_ensembles_ppo.py, configs/iterated_rlhf.py): the
over-optimisation study's PPO against its width-8 noisy proxy, where gold falls while the proxy
climbs."""

import ml_collections

from alignax.proxies import reward_model_config
from alignax.stages import stage_section
from configs import ppo, reward_model, sft
from configs.common import (
    shrink_reward_model_and_ppo_stages,
    shrink_rlhf_base_stages,
    stages_parent_config,
)


def overoptimized_ppo_config(smoke: bool) -> ml_collections.ConfigDict:
    """The unlocked parent config of such a study: six seeds on two worker processes; stages
    pretrain and sft (the DPO frontier study's trimmed stages), reward_model (width 8 from
    scratch, on 2,048 pairs of the SFT policy's samples with a quarter of the gold annotator's
    labels flipped, 256 steps) and ppo (64 iterations at learning rate 1e-4, a fixed KL
    coefficient, the value model from the policy), the templates the study sets its runs from;
    `measure`: the policies at every 8th iteration on one fresh draw of 512 held-out prompts,
    compared at KL budgets of 2 to 24 nats. With `smoke`, one seed at toy sizes for the tests."""
    config = stages_parent_config("tiny")
    config.seeds = (0, 1, 2, 3, 4, 5)  # 3 rounds of the 2 workers
    config.workers = 2  # processes the seeds run on, one core each (1: this one, in order)
    config.stages = ml_collections.ConfigDict(
        {
            "pretrain": stage_section(sft.get_config("pretrain")),
            "sft": stage_section(sft.get_config("runlocal")),
            "reward_model": stage_section(reward_model.get_config("noisy"), own=("model",)),
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
            # The steps a PPO run's policy is measured at: its trajectory; the last is
            # stages.ppo.train.steps (every one a kept checkpoint).
            "checkpoints": (8, 16, 24, 32, 40, 48, 56, 64),
            "kl_budgets": (2.0, 4.0, 8.0, 16.0, 24.0),  # nats: where runs are compared at equal KL
            "num_prompts": 512,  # of the fresh draw every measured policy answers
            "max_new_tokens": 32,
        }
    )
    if smoke:
        config.seeds = (0,)
        config.workers = 1
        shrink_rlhf_base_stages(stages)
        stages.reward_model.pairs.num_pairs = 64
        shrink_reward_model_and_ppo_stages(stages)
        config.measure.update(checkpoints=(2, 4), num_prompts=16)
    return config
