"""DPO-family training on simulated-annotator pairs of the built-in review task.

    python -m experiments.dpo --config configs/dpo.py:runlocal --workdir runs/dpo \
        --config.init_from=runs/sft --config.labels.policy_from=runs/sft
    python -m experiments.dpo --config configs/dpo.py:ipo --workdir runs/ipo --config.init_from=...

The preset is the name of a registered pairwise loss ('runlocal' = 'dpo'); its
hyperparameters are declared under `loss.hyperparameters` with the loss's defaults, so
`--config.loss.hyperparameters.beta=0.05` works and a key the loss does not take is an error.
WPO's weights: `configs/dpo.py:wpo --config.loss.hyperparameters.weighting=unclamped` (TRL >= 0.29)
or "clamped" (the default, TRL <= 0.28); see `alignax.losses.dpo_extensions.wpo_weights`.
runlocal: tiny model, 4,096 pairs, 300 steps of batch 32; about a minute on 2 CPU cores. Expect
the held-out implicit-reward accuracy above 0.5 and the margin growing; the gold reward of samples
rises above the initial policy's while the KL to the reference grows.
"""

import ml_collections

from alignax.data.sources import default_data_config
from alignax.labels import default_labels_config
from alignax.losses.registry import default_hyperparameters, registered
from alignax.models.lora import default_lora_config
from configs.common import base_config, eval_config, pairs_config

# Per-loss beta scales differ: SimPO/ORPO/CPO use length-normalised or odds terms.
_BETA = {"simpo": 2.0, "orpo": 0.1, "cpo": 0.1, "ipo": 0.1}


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    name = "dpo" if arg == "runlocal" else arg
    if name not in registered("pairwise"):
        known = ", ".join(registered("pairwise"))
        raise ValueError(f"unknown preset {arg!r}; known: runlocal, {known}")
    config = base_config("tiny")
    config.labels = default_labels_config()
    config.pairs = pairs_config(num_pairs=4096, num_eval_pairs=256)
    config.preferences = ml_collections.ConfigDict(
        {
            # Reference log-probs computed once before training instead of in every step.
            "precompute_reference": False,
            # Reference-free losses (SimPO, ORPO, sft, ...): also report the KL of samples to the
            # initial policy (keeps one more copy of its params for the evaluation).
            "eval_kl_to_initial": False,
            # The LM head only at the positions that predict response tokens (a window as wide
            # as the longest response in the pairs): the same loss and gradients with less work
            # (benchmarks/run.py times it). Off by default: gradients then differ in the 8th
            # digit, and the published blocks were made without it.
            "scored_logits_only": False,
        }
    )
    config.eval = eval_config(num_prompts=128, max_new_tokens=32)
    # LoRA adapters (rank > 0): the trained params are the adapters, the reference is the base
    # without them (no second copy of the weights); see alignax/models/lora.py.
    config.lora = default_lora_config()
    config.loss = ml_collections.ConfigDict(
        {
            "name": name,
            "hyperparameters": default_hyperparameters(
                name, **({} if name == "sft" else {"beta": _BETA.get(name, 0.1)})
            ),
        }
    )
    config.train.update(
        steps=300, batch_size=32, log_every=50, eval_every=150, checkpoint_every=150
    )
    config.optimizer.update(learning_rate=5e-4, warmup_steps=20, schedule="constant")
    # Your data (README, 'Your model and your data'): --config.data.path=prefs.jsonl
    # --config.data.tokenizer=<checkpoint>; a file of prompts with --config.data.verifier=...
    # labels pairs of the policy's samples (labels.policy_from) by the verifier.
    config.data = default_data_config(verifier=True)
    config.lock()
    return config
