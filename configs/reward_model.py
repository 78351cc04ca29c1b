"""Reward model on simulated-annotator comparisons of the built-in review task.

    python -m experiments.reward_model --config configs/reward_model.py:runlocal --workdir runs/rm \
        --config.labels.policy_from=runs/sft --config.init_from=runs/pretrain

runlocal: tiny model (fresh, or `--config.init_from=runs/pretrain` to start from a policy's
backbone), 4,096 Bradley-Terry-labelled pairs of the SFT policy's samples
(`--config.labels.source=generator` labels the task generator's samples instead), 400 steps of
batch 32; about a minute on 2 CPU cores. Expect held-out accuracy well above chance (0.5)
against the annotator and against gold.
Presets: runlocal | kway (4-way rankings, InstructGPT K-choose-2 loss) | noisy (25% label flips)
| ensemble (4 seeds trained in one step; held-out metrics of the mean, worst-case and
mean-minus-std ensemble rewards).
"""

import ml_collections

from alignax.data.sources import default_data_config
from alignax.labels import default_labels_config
from alignax.models.lora import default_lora_config
from configs.common import base_config, pairs_config


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    if arg not in ("runlocal", "kway", "noisy", "ensemble"):
        raise ValueError(f"unknown preset {arg!r}; known: runlocal, kway, noisy, ensemble")
    config = base_config("tiny")
    config.labels = default_labels_config(flip_rate=0.25 if arg == "noisy" else 0.0)
    config.pairs = pairs_config(num_pairs=4096, num_eval_pairs=512)
    config.reward = ml_collections.ConfigDict(
        {
            "num_responses": 4 if arg == "kway" else 2,
            "ensemble_size": 4 if arg == "ensemble" else 1,  # members trained in one step
            "uncertainty_penalty": 1.0,  # lambda of the mean-minus-std ensemble reward
        }
    )
    config.loss = ml_collections.ConfigDict(
        {
            "name": "pairwise" if arg == "kway" else "bradley_terry",  # | "plackett_luce"
            "center_coefficient": 0.01,  # bradley_terry only: eta (r_c + r_r)^2
            "label_smoothing": 0.0,  # bradley_terry only
        }
    )
    config.train.update(
        steps=400, batch_size=32, log_every=50, eval_every=200, checkpoint_every=200
    )
    config.optimizer.update(learning_rate=1e-3, warmup_steps=20)
    # Real data: --config.data.path=prefs.jsonl --config.data.tokenizer=spm.model (see README).
    config.data = default_data_config()
    config.lora = default_lora_config()
    config.lock()
    return config
