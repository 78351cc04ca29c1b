"""Online against offline preference learning at matched label budgets (Tang et al. 2024; Xu et
al. 2024, "Is DPO superior to PPO for LLM alignment?"), over seeds.

    python -m experiments.online_offline --config configs/online_offline.py \
        --workdir runs/online_offline
    python -m experiments.online_offline --config configs/online_offline.py:runlocal \
        --workdir runs/online_offline_smoke

Per seed: pretrain -> SFT (the DPO frontier study's trimmed stages); then at every label budget
B of `budgets`, three ways to spend B labels of the same annotator (the gold reward's
Bradley-Terry annotator):
  - offline DPO: B pairs of the SFT policy's samples, DPO from the SFT policy
    (stage offline_b<B>, `stages.dpo`);
  - online (iterative) DPO: `online.rounds` rounds, round r labelling B / rounds fresh pairs of
    round r - 1's policy's samples and running DPO from that policy, its reference (stages
    online_b<B>_r<r>; the same DPO settings, the steps divided among the rounds);
  - PPO against a reward model of the offline run's B pairs (stages rm_b<B>, `stages.reward_model`,
    and ppo_b<B>, `stages.ppo`).
Every run's policy at its measured steps (offline: `measure.dpo_checkpoints`; online: each round's
end; PPO: `measure.ppo_checkpoints`) and the SFT policy answer one fresh draw of
`measure.num_prompts` held-out prompts with one sampling key: gold, KL to the SFT policy, length
and diversity.

Criteria, stated before the run (answered in results.md from 95% t-intervals over seeds of paired
differences), at every budget: (1) online minus offline DPO, (2) PPO minus offline DPO and (3)
online DPO minus PPO, each in gold at equal KL (each method's line through its measured policies,
read at `measure.kl_budgets`) and in its peak gold over the run (the SFT policy included; the
peak chosen on half of the fresh prompts, read on the other half, both ways): which dominates at
which budget?

Nothing was tuned: DPO's settings are the length-bias study's (beta 0.1, 64 steps of 32 pairs
whatever the budget, so a small budget is seen for more epochs), PPO's are its PPO's (adaptive
KL to 8 nats), the reward model's are its reward model's; every method gets one setting. Online
DPO's rounds restart the optimizer from each round's policy, each warming up for its share of
the template's warmup (`stages.dpo.optimizer.warmup_steps` / rounds). default: 6 seeds;
its wall time is in its published results block (docs/results/online_offline.md). runlocal: the
same pipeline at toy sizes for the test (one seed; the pluralism smoke runs two); compile-bound.
"""

import ml_collections

from alignax.stages import stage_section
from configs import dpo, ppo, reward_model, sft
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
    config.budgets = (256, 1024, 4096)  # labels each method spends
    config.online = ml_collections.ConfigDict({"rounds": 4})
    config.stages = ml_collections.ConfigDict(
        {
            "pretrain": stage_section(sft.get_config("pretrain")),
            "sft": stage_section(sft.get_config("runlocal")),
            # The template of the offline run and of every online round (which divides its
            # steps and its pairs among the rounds).
            "dpo": stage_section(dpo.get_config("runlocal")),
            "reward_model": stage_section(reward_model.get_config("runlocal"), own=("model",)),
            "ppo": stage_section(ppo.get_config()),
        }
    )
    stages = config.stages
    stages.pretrain.train.update(steps=300, eval_every=300)
    stages.sft.train.update(steps=150, eval_every=150)
    stages.dpo.pairs.num_eval_pairs = 64
    stages.dpo.eval.num_prompts = 32
    stages.dpo.train.update(
        steps=64, batch_size=32, log_every=8, eval_every=64, checkpoint_every=16, keep_checkpoints=4
    )
    # The same annotator and pairs as the offline run (the reward model of its labels).
    stages.reward_model.labels = stages.dpo.labels.copy_and_resolve_references()
    stages.reward_model.pairs.num_eval_pairs = 256
    stages.reward_model.train.update(steps=96, eval_every=96, checkpoint_every=96)
    stages.ppo.rewards.value_init = "policy"
    stages.ppo.ppo.update(kl_coef=0.1, kl_target=8.0, kl_horizon=64)
    stages.ppo.eval.num_prompts = 32
    stages.ppo.train.update(
        steps=32, batch_size=32, log_every=4, eval_every=32, checkpoint_every=4, keep_checkpoints=8
    )
    config.measure = ml_collections.ConfigDict(
        {
            # The steps every offline run and every PPO run is measured at (each one a kept
            # checkpoint, the last the run's final step); online DPO at each round's end.
            "dpo_checkpoints": (16, 32, 48, 64),
            "ppo_checkpoints": (4, 8, 16, 32),
            "kl_budgets": (1.0, 2.0, 4.0),  # nats: where the methods are compared
            "num_prompts": 512,
            "max_new_tokens": 32,
        }
    )
    if arg == "runlocal":
        config.seeds = (0,)
        config.workers = 1
        config.budgets = (32,)
        config.online.rounds = 2
        shrink_rlhf_base_stages(stages)
        stages.dpo.pairs.num_eval_pairs = 16
        stages.dpo.eval.num_prompts = 16
        stages.dpo.train.update(
            steps=4, batch_size=8, log_every=2, eval_every=4, checkpoint_every=2, keep_checkpoints=2
        )
        shrink_reward_model_and_ppo_stages(stages)
        config.measure.update(dpo_checkpoints=(2, 4), ppo_checkpoints=(2, 4), num_prompts=16)
    config.lock()
    return config
