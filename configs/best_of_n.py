"""Best-of-n against a reward model, scored by gold, on the built-in review task or IMDb.

    python -m experiments.best_of_n --config configs/best_of_n.py:runlocal --workdir runs/bon \
        --config.init_from=runs/sft --config.rewards.reward_model_from=runs/rm

runlocal: 256 held-out prompts x a pool of 64 samples from the policy; under a minute on 2 CPU
cores. Prints proxy and gold reward of best-of-n for n = 1..64 (standardised on the policy's
samples, with bootstrap standard errors) against KL_bon and plots them with the oracle curve.
imdb: the same on the IMDb task, for the SFT policy and reward model of a
configs/pipeline.py:imdb run (e.g. --config.init_from=runs/imdb/seed0/sft
--config.rewards.reward_model_from=runs/imdb/seed0/reward_model). imdb_smollm2: for a
configs/pipeline.py:imdb_smollm2 run (SmolLM2-135M policy and reward model): 64 prompts x 32
samples, about 4 minutes on 2 CPU cores.
Your data: the held-out prompts of a file (`--config.data.path`, `--config.data.tokenizer`),
with a verifier as the gold reward (`--config.data.verifier`; README, "Your model and your
data").
"""

import ml_collections

from alignax.data.sources import default_data_config
from configs.common import base_config


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    presets = ("runlocal", "imdb", "imdb_smollm2")
    if arg not in presets:
        raise ValueError(f"unknown preset {arg!r}; known: {', '.join(presets)}")
    config = base_config("tiny", task="imdb" if arg.startswith("imdb") else "review")
    # workdir of a reward_model run (the same key as PPO's)
    config.rewards = ml_collections.ConfigDict({"reward_model_from": ""})
    config.best_of_n = ml_collections.ConfigDict(
        {"num_prompts": 256, "pool_size": 64, "max_new_tokens": 32, "num_bootstrap": 1000}
    )
    config.data = default_data_config(verifier=True)
    if arg.startswith("imdb"):  # the policy and reward model of configs/pipeline.py:imdb
        config.model.update(vocab_size=config.task.spm_vocab_size, max_len=64)
        config.best_of_n.max_new_tokens = config.task.response_tokens
    if arg == "imdb_smollm2":  # the policy and reward model of configs/pipeline.py:imdb_smollm2
        from configs.pipeline import get_config as pipeline_config

        pipeline = pipeline_config("imdb_smollm2")
        config.task.tokenizer = pipeline.task.tokenizer
        config.model, config.mesh = pipeline.model, pipeline.mesh
        config.best_of_n.update(num_prompts=64, pool_size=32)
    config.lock()
    return config
