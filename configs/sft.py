"""Supervised fine-tuning on the built-in review task (or pretraining on its generator text).

    python -m experiments.sft --config configs/sft.py:runlocal --workdir runs/sft
    python -m experiments.sft --config configs/sft.py:pretrain --workdir runs/pretrain

runlocal: tiny model, 300 steps of batch 32 on 2,048 best-of-8 demonstrations; about a minute
on 2 CPU cores. Expect eval NLL to fall and the gold reward of samples to rise above the
generator's (0 by construction of the z-scored gold reward).
pretrain: the same model trained from scratch on 16,384 generator texts (loss on all tokens);
its result is the base policy of the pipeline.
arithmetic: the arithmetic task's exact-answer demonstrations, 500 steps: a partly competent
starting point for GRPO (configs/grpo.py); its held-out pass@k is in the rlvr experiment.
Presets: runlocal | pretrain | arithmetic | small (10M model, longer). `--config.sft.pack=True`
packs several training sequences into each row (`alignax.data.batching.pack_sequences`; each is
scored as if alone: tests/test_packing.py). `--config.lora.rank=8` trains LoRA adapters only
(alignax/models/lora.py); later stages that load the workdir get the merged policy.
"""

import ml_collections

from alignax.data.sources import default_data_config
from alignax.models.lora import default_lora_config
from configs.common import base_config, eval_config


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    if arg not in ("runlocal", "pretrain", "arithmetic", "small"):
        raise ValueError(f"unknown preset {arg!r}; known: runlocal, pretrain, arithmetic, small")
    config = base_config(
        "small" if arg == "small" else "tiny",
        task="arithmetic" if arg == "arithmetic" else "review",
    )
    config.sft = ml_collections.ConfigDict(
        {
            "data": "pretraining" if arg == "pretrain" else "demonstrations",
            "num_examples": 16384 if arg == "pretrain" else 2048,
            "num_eval_examples": 256,
            "num_candidates": 8,  # demonstrations: best-of-8 generator samples by gold reward
            # Pack several training sequences into each row (block-diagonal attention); the
            # held-out NLL is computed unpacked either way.
            "pack": False,
            # The LM head only at the positions that predict scored tokens (configs/dpo.py's
            # preferences.scored_logits_only; demonstrations: the responses).
            "scored_logits_only": False,
        }
    )
    config.eval = eval_config(num_prompts=128, max_new_tokens=32)
    config.train.update(
        steps=600 if arg == "pretrain" else 300,
        batch_size=32,
        log_every=50,
        eval_every=300,
        checkpoint_every=100,
    )
    config.optimizer.update(learning_rate=3e-3 if arg == "pretrain" else 1e-3, warmup_steps=30)
    if arg == "arithmetic":
        config.sft.num_examples = 8192
        config.eval.max_new_tokens = 4
        config.train.update(steps=500, eval_every=500)
        config.optimizer.learning_rate = 3e-3
    if arg == "small":
        config.train.update(steps=2000, eval_every=500, checkpoint_every=500)
        config.optimizer.learning_rate = 5e-4
    # LoRA adapters (rank > 0): the adapters train, the base stays as it was loaded.
    config.lora = default_lora_config()
    # Your data (README, 'Your model and your data'): --config.data.path=file.jsonl
    # --config.data.tokenizer=<checkpoint> [--config.data.verifier=exact|regex|module:function].
    config.data = default_data_config(verifier=True)
    config.lock()
    return config
