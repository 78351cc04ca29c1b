"""A real model's steps: SmolLM2-135M-Instruct (the GGUF that requirements-data.txt ships,
dequantised to float32 by alignax's importer; the peers load the same weights exported with
`save_hf`).

1. DPO step on `PAIRS` pairs of `PROMPT` + `RESPONSE` tokens, full fine-tuning and LoRA r8 on q
   and v (alpha 16, no dropout), AdamW (lr 1e-6, no decay) after clipping at 1.0 on the TRL
   side and without clipping on alignax's (the stages' step); sigmoid loss, beta 0.1. alignax:
   the stages' own step (`benchmarks.memory.stage_step`; LoRA's reference is the base without
   adapters). TRL: `DPOTrainer` with a reference copy (full) or with PEFT's `LoraConfig` (LoRA:
   the reference is the base with the adapters disabled), one optimizer step as its loop runs it.
2. Sampling with a KV cache, `SAMPLING_PROMPTS` prompts of 64 tokens x 128 new tokens,
   temperature 1, against `generate`.

llama.cpp (`llama-cpp-python`) is not compared: the package registry has no wheel of it for this
platform, and a source build compiles llama.cpp (cmake and a C++ toolchain) at install time.
"""

from __future__ import annotations

import functools
import tempfile

import jax
import numpy as np

from alignax.models.gguf import load_gguf, smollm2_gguf
from benchmarks import dpo_step, memory, sampling
from benchmarks.common import (
    carried,
    hf_models,
    one_device_mesh,
    trl_peer,
    trl_runner,
    trl_training_args,
)

PAIRS, PROMPT, RESPONSE = 2, 256, 256  # 4 pairs: over 24 GiB with both sides held
SAMPLING_PROMPTS = (8, 32)
NEW_TOKENS = 128
LEARNING_RATE = 1e-6
LORA_RANK, LORA_ALPHA, LORA_TARGETS = 8, 16.0, ("q", "v")
HF_NAMES = {"q": "q_proj", "v": "v_proj"}


@functools.cache
def weights():
    """(model config, params) of SmolLM2-135M-Instruct in float32, or None when the GGUF is not
    installed (requirements-data.txt)."""
    path = smollm2_gguf()
    if path is None:
        return None
    config, params = load_gguf(path, max_len=PROMPT + RESPONSE)
    return config, jax.device_get(params)


class _Shape:
    """What `benchmarks.common.hf_models` reads of a shape: the model config to export."""

    def __init__(self, config):
        self.config = config

    def model_config(self):
        return self.config


def pairs(vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    draw = lambda length: rng.integers(3, vocab, size=(PAIRS, length))  # noqa: E731
    return {"prompt": draw(PROMPT), "chosen": draw(RESPONSE), "rejected": draw(RESPONSE)}


def _dpo_batch(token_pairs: dict) -> dict:
    prompt = token_pairs["prompt"]
    tokens = np.stack(
        [np.concatenate([prompt, token_pairs[k]], 1) for k in ("chosen", "rejected")], 1
    )
    loss_mask = np.zeros_like(tokens)
    loss_mask[..., PROMPT:] = 1
    return {
        "tokens": tokens.astype(np.int32),
        "input_mask": np.ones_like(tokens, np.int32),
        "loss_mask": loss_mask.astype(np.int32),
        "ranks": np.tile(np.arange(2, dtype=np.int32), (PAIRS, 1)),
    }


def alignax_dpo(config, params, token_pairs: dict, rank: int, scored_logits_only=False):
    """A blocking call of the stages' DPO step on SmolLM2 (LoRA when `rank` > 0; the LM head
    only at response positions with `scored_logits_only`)."""
    mesh = one_device_mesh()
    step, state, batch = memory.stage_step(
        "dpo",
        config,
        mesh,
        rank,
        LORA_TARGETS if rank else (),
        params=jax.device_put(params),
        batch=_dpo_batch(token_pairs),
        learning_rate=LEARNING_RATE,
        scored_logits_only=scored_logits_only,
    )
    compiled = step.lower(state, batch, jax.random.key(0)).compile()
    return carried(compiled, state, batch, jax.random.key(0))


def trl_dpo(config, params, token_pairs: dict, rank: int):
    """TRL's DPO step on the same weights and pairs (PEFT LoRA when `rank` > 0), or (None, why)."""
    try:
        import peft
        import trl
    except ImportError as error:
        return None, f"TRL side skipped: {error} (pip install -r benchmarks/requirements.txt)"
    count = 1 if rank else 2
    models = hf_models(_Shape(config), params, count=count)
    scratch = tempfile.TemporaryDirectory(prefix="alignax-bench-smollm2-")
    args = trl.DPOConfig(
        output_dir=scratch.name,
        per_device_train_batch_size=PAIRS,
        beta=dpo_step.BETA,
        loss_type=["sigmoid"],
        max_length=None,
        **trl_training_args(LEARNING_RATE),
    )
    examples = [
        {
            "prompt_ids": token_pairs["prompt"][i].tolist(),
            "chosen_ids": token_pairs["chosen"][i].tolist(),
            "rejected_ids": token_pairs["rejected"][i].tolist(),
        }
        for i in range(PAIRS)
    ]
    peft_config = None
    if rank:
        peft_config = peft.LoraConfig(
            r=rank,
            lora_alpha=LORA_ALPHA,
            lora_dropout=0.0,
            target_modules=[HF_NAMES[t] for t in LORA_TARGETS],
            task_type="CAUSAL_LM",
        )
    trainer = dpo_step.build_trainer(
        trl,
        models[0],
        None if rank else models[1],
        args,
        examples,
        peft_config=peft_config,
    )
    collator = trl.trainer.dpo_trainer.DataCollatorForPreference(pad_token_id=0)
    inputs = trainer._prepare_inputs(collator(examples))
    about = trl_peer() + (f", PEFT {peft.__version__}" if rank else "")
    return trl_runner(trainer, trainer.model, inputs, scratch), about


def alignax_sampler(config, params, prompt_tokens):
    shape = _Shape(config)
    return sampling.alignax_sampler(shape, params, prompt_tokens, NEW_TOKENS)


def sampling_prompts(vocab: int, count: int, length: int = 64, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(3, vocab, size=(count, length)).astype(np.int32)
