"""Unpaired preference training (KTO, APO-zero unpaired, BCO) on desirable / undesirable
examples.

    python -m experiments.kto --config configs/kto.py:runlocal --workdir runs/kto \
        --config.init_from=runs/sft --config.labels.policy_from=runs/sft
    python -m experiments.kto --config configs/kto.py:bco --workdir runs/bco --config.init_from=...
    # a KTO file of {prompt, completion, label} records with its sentencepiece tokenizer:
    python -m experiments.kto --config configs/kto.py --workdir runs/kto_file \
        --config.data.path=kto.jsonl --config.data.tokenizer=spm.model

The preset is a loss name from the registered unpaired losses ('runlocal' = 'kto'); its
hyperparameters are declared under `loss.hyperparameters` with the loss's defaults. With the
built-in task, the simulated annotator's pairs of the SFT policy's samples are split into a
desirable (chosen) and an undesirable (rejected) example each, as KTO's paper does with
preference data. runlocal: tiny model, 2,048 pairs (4,096 examples), 300 steps of batch 32.
"""

import ml_collections

from alignax.data.sources import default_data_config
from alignax.labels import default_labels_config
from alignax.losses.registry import default_hyperparameters, registered
from alignax.models.lora import default_lora_config
from configs.common import base_config, eval_config, pairs_config


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    name = "kto" if arg == "runlocal" else arg
    if name not in registered("unpaired"):
        known = ", ".join(registered("unpaired"))
        raise ValueError(f"unknown preset {arg!r}; known: runlocal, {known}")
    config = base_config("tiny")
    config.labels = default_labels_config()
    # Annotated pairs, each split into a desirable and an undesirable example.
    config.pairs = pairs_config(num_pairs=2048, num_eval_pairs=128)
    # Held-out prompts sampled and scored by gold at every evaluation (0: skip).
    config.eval = eval_config(num_prompts=128, max_new_tokens=32)
    config.loss = ml_collections.ConfigDict(
        {"name": name, "hyperparameters": default_hyperparameters(name, beta=0.1)}
    )
    config.train.update(
        steps=300, batch_size=32, log_every=50, eval_every=150, checkpoint_every=150
    )
    config.optimizer.update(learning_rate=5e-4, warmup_steps=20, schedule="constant")
    config.data = default_data_config(verifier=True)
    config.lora = default_lora_config()
    config.lock()
    return config
