"""Sections every experiment config shares. Experiment configs build on `base_config`."""

import ml_collections

from alignax.models.presets import mesh_config, model_config
from alignax.optim import default_optimizer_config
from alignax.sharding import default_distributed_config
from alignax.tasks import default_task_config
from alignax.training import default_train_config


def base_config(model: str = "tiny", task: str = "review") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.multihost = False  # True on multi-host TPU pods / multi-node GPU jobs
    config.distributed = default_distributed_config()  # how processes find each other
    config.task_name = task
    config.task = default_task_config(task)
    config.model = model_config(model)
    config.mesh = mesh_config(model)
    config.optimizer = default_optimizer_config()
    config.train = default_train_config()
    # Workdir of the stage whose final params initialise this one ('' = fresh init).
    config.init_from = ""
    return config


def eval_config(num_prompts: int, max_new_tokens: int | None = None) -> ml_collections.ConfigDict:
    """A stage's `eval` section: how many held-out prompts its policy answers at every
    evaluation and, for the offline stages, how long the answers may be (the online stages
    answer at `rollout.max_new_tokens`, their training length). docs/config_keys.md."""
    section = {"num_prompts": num_prompts}
    if max_new_tokens is not None:
        section["max_new_tokens"] = max_new_tokens
    return ml_collections.ConfigDict(section)


def pairs_config(num_pairs: int, num_eval_pairs: int) -> ml_collections.ConfigDict:
    """A stage's `pairs` section: how many labelled comparisons it trains on (pairs, or K-way
    rankings with a reward model's `reward.num_responses`) and how many of held-out prompts it
    reports on. docs/config_keys.md."""
    return ml_collections.ConfigDict({"num_pairs": num_pairs, "num_eval_pairs": num_eval_pairs})


def scratch_reward_models_config(width: int = 32, steps: int = 1000) -> ml_collections.ConfigDict:
    """The `rm` section of a study that trains its reward models from scratch inside its
    evaluation, vmapped (the pluralism and length-bias studies): the policy's architecture at
    `width`, `steps` of AdamW on batches of 32 pairs, and Bradley-Terry's centring term."""
    return ml_collections.ConfigDict(
        {
            "width": width,  # d_model of every reward model
            "steps": steps,
            "batch_size": 32,
            "learning_rate": 1e-3,
            "weight_decay": 0.01,
            "center_coefficient": 0.01,  # eta (r_1 + r_2)^2, as the proxies' Bradley-Terry loss
        }
    )


def stages_parent_config(
    model: str = "tiny", task: str = "review", *, seed: bool = False
) -> ml_collections.ConfigDict:
    """The top of a multi-stage experiment's config: the sections every stage shares (copied
    into each by `alignax.stages.stage_config`); `seed` for an experiment of one seed, without
    it for one that lists its `seeds`."""
    common = base_config(model, task)
    keys = ("seed",) * seed + ("multihost", "distributed", "task_name", "task", "model", "mesh")
    return ml_collections.ConfigDict({key: common[key] for key in keys})


def shrink_rlhf_base_stages(stages: ml_collections.ConfigDict) -> None:
    """A smoke preset's pretrain and SFT stages (`stages.pretrain`, `stages.sft`): a few steps
    on few examples, evaluated on 16 prompts (the DPO frontier and length-bias studies)."""
    stages.pretrain.train.update(steps=10, log_every=10, eval_every=10)
    stages.pretrain.sft.num_examples = 512
    stages.pretrain.eval.num_prompts = 16
    stages.sft.train.update(steps=20, log_every=10, eval_every=20)
    stages.sft.sft.num_examples = 256
    stages.sft.eval.num_prompts = 16


def shrink_reward_model_and_ppo_stages(stages: ml_collections.ConfigDict) -> None:
    """A smoke preset's reward-model and PPO stages (`stages.reward_model`, `stages.ppo`): a few
    steps of batch 8, 16 held-out pairs and prompts, PPO on 32 prompts with a checkpoint every
    2 steps, the last 2 kept (the length-bias, ensemble and online-offline studies)."""
    stages.reward_model.pairs.num_eval_pairs = 16
    stages.reward_model.train.update(
        steps=4, batch_size=8, log_every=2, eval_every=4, checkpoint_every=4
    )
    stages.ppo.rollout.num_prompts = 32
    stages.ppo.eval.num_prompts = 16
    stages.ppo.train.update(
        steps=4, batch_size=8, log_every=2, eval_every=4, checkpoint_every=2, keep_checkpoints=2
    )
