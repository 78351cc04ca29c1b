"""The README's main command: pretrain -> SFT -> reward model -> PPO and DPO -> evaluation.

    python -m experiments.pipeline --config configs/pipeline.py:runlocal --workdir runs/pipeline

runlocal: the tiny model on the built-in review task, 3 seeds; about 10 minutes a seed on one CPU
core. Produces <workdir>/results.md (gold reward, win rate vs SFT, KL to SFT, length for
base/SFT/PPO/DPO, mean and 95% interval over seeds), figures/, results.json and summary.json;
each stage's own outputs are in <workdir>/seed<k>/<stage>/. `model`, `mesh` and `task` here apply
to every stage but the reward model, whose size is `stages.reward_model.model`; each stage's
other settings are under `stages.<stage>` (e.g. --config.stages.ppo.train.steps=200).
`--config.seeds=0,` runs one seed.
"""

import ml_collections

from configs import dpo, ppo, reward_model, sft
from configs.common import stages_parent_config


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    if arg != "runlocal":
        raise ValueError(f"unknown preset {arg!r}; known: runlocal")
    config = stages_parent_config()
    config.seeds = (0, 1, 2)
    config.stages = ml_collections.ConfigDict(
        {
            "pretrain": sft.get_config("pretrain"),
            "sft": sft.get_config("runlocal"),
            "reward_model": reward_model.get_config("runlocal"),
            "ppo": ppo.get_config("runlocal"),
            "dpo": dpo.get_config("runlocal"),
        }
    )
    config.eval = ml_collections.ConfigDict({"num_prompts": 512, "max_new_tokens": 32})
    config.lock()
    return config
