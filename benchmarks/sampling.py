"""Sampling throughput with a KV cache on both sides: `alignax.sampling.sample` against Hugging
Face `generate`, the same weights, `batch` prompts of `prompt_len` tokens, exactly `new_tokens`
new tokens each (no end-of-sequence stop), temperature 1, no top-k / top-p."""

from __future__ import annotations

import jax
import numpy as np

from alignax.models import build_model
from alignax.sampling import sample
from benchmarks.common import Shape, hf_models


def prompts(shape: Shape, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(3, shape.vocab, size=(shape.batch, shape.prompt_len)).astype(np.int32)


def alignax_sampler(shape: Shape, params, prompt_tokens, new_tokens: int, *, use_cache=True):
    """`use_cache=False`: every step recomputes the whole prefix (what the KV cache saves)."""
    model = build_model(shape.model_config())
    mask = np.ones_like(prompt_tokens)
    keys = iter(jax.random.split(jax.random.key(0), 10_000))

    def run():
        out = sample(
            model,
            params,
            prompt_tokens,
            mask,
            next(keys),
            max_new_tokens=new_tokens,
            eos_id=-1,
            use_cache=use_cache,
        )
        return jax.block_until_ready(out.tokens)

    return run


def hf_model(shape: Shape, params):
    """The same weights as a Hugging Face PyTorch model and a description of the peer, or
    (None, reason) when torch / transformers are missing."""
    try:
        import torch
        import transformers  # noqa: F401 (the peer's availability)
    except ImportError as error:
        return None, f"Hugging Face side skipped: {error}"
    (model,) = hf_models(shape, params)
    model.eval()
    threads = torch.get_num_threads()
    return model, f"transformers generate, torch {torch.__version__} ({threads} threads)"


def hf_sampler(model, prompt_tokens, new_tokens: int):
    """`generate` with its KV cache on `model` (from `hf_model`)."""
    import torch

    input_ids = torch.from_numpy(prompt_tokens.astype(np.int64))
    attention_mask = torch.ones_like(input_ids)

    def run():
        with torch.inference_mode():
            return model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                use_cache=True,
                pad_token_id=0,
                eos_token_id=None,
            )

    return run
