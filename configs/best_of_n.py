"""Best-of-n against a reward model, scored by gold, on the built-in review task.

    python -m experiments.best_of_n --config configs/best_of_n.py:runlocal --workdir runs/bon \
        --config.init_from=runs/sft --config.rewards.reward_model_from=runs/rm

runlocal: 256 held-out prompts x a pool of 64 samples from the policy; under a minute on 2 CPU
cores. Prints proxy and gold reward of best-of-n for n = 1..64 (standardised on the policy's
samples, with bootstrap standard errors) against KL_bon and plots them with the oracle curve.
"""

import ml_collections

from configs.common import base_config


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    if arg != "runlocal":
        raise ValueError(f"unknown preset {arg!r}; known: runlocal")
    config = base_config("tiny")
    # workdir of a reward_model run (the same key as PPO's)
    config.rewards = ml_collections.ConfigDict({"reward_model_from": ""})
    config.best_of_n = ml_collections.ConfigDict(
        {"num_prompts": 256, "pool_size": 64, "max_new_tokens": 32, "num_bootstrap": 1000}
    )
    config.lock()
    return config
