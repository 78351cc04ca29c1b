"""Shared pieces of the benchmarks: the compared shape, interleaved timing, the table.

Timing rule: every case of a comparison is compiled and warmed up first, then the cases run in
turn (A B A B ...) for `rounds` rounds, so that a slow spell of a shared machine hits all of them
alike; a case's time is the median of its rounds and its spread the min-max range.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable

import jax
import ml_collections

from alignax import steps
from alignax.models import default_model_config


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmark setting, the same on every side."""

    layers: int = 4
    d_model: int = 256
    heads: int = 4
    mlp_dim: int = 1024
    vocab: int = 4096
    batch: int = 8  # pairs for a preference step, prompts for sampling
    prompt_len: int = 64
    response_len: int = 64

    def model_config(self) -> ml_collections.ConfigDict:
        """Llama layout (RMSNorm, RoPE, SwiGLU), untied embeddings, float32."""
        config = default_model_config()
        config.update(
            vocab_size=self.vocab,
            d_model=self.d_model,
            num_layers=self.layers,
            num_heads=self.heads,
            num_kv_heads=self.heads,
            mlp_dim=self.mlp_dim,
            max_len=max(512, self.prompt_len + self.response_len),
            tie_embeddings=False,
        )
        return config

    def describe(self) -> str:
        return (
            f"Llama layout, {self.layers} layers, d {self.d_model}, {self.heads} heads x "
            f"{self.d_model // self.heads}, SwiGLU {self.mlp_dim}, vocab {self.vocab}, untied, "
            f"float32"
        )


@dataclasses.dataclass
class Timing:
    name: str
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def spread(self) -> str:
        return f"{min(self.seconds) * 1e3:.0f}-{max(self.seconds) * 1e3:.0f}"


def interleave(cases: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 2):
    """Times each zero-argument callable (which must block until its work is done): `warmup`
    untimed calls each (compilation included), then `rounds` rounds of one call per case."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    seconds = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return {name: Timing(name, s) for name, s in seconds.items()}


def compiled_step(step_fn, state, batch: dict, mesh) -> Callable[[], object]:
    """A zero-argument call of the train step `step_fn`, compiled once with `steps.jit_step`,
    that carries the state from call to call and blocks until the step's loss is ready."""
    rng = jax.random.key(0)
    compiled = steps.jit_step(step_fn, state, batch, mesh).lower(state, batch, rng).compile()
    return carried(compiled, state, batch, rng)


def carried(program, state, batch: dict, rng) -> Callable[[], object]:
    """A zero-argument call of a compiled train step `program(state, batch, rng) -> (state,
    metrics)` that donates its state: each call runs on the state the last one returned and
    blocks until the step's loss is ready."""
    holder = [state]

    def run():
        holder[0], metrics = program(holder[0], batch, rng)
        return jax.block_until_ready(metrics["loss"])

    return run


def hf_models(shape: Shape, params, count: int = 1) -> list:
    """`count` Hugging Face PyTorch models holding `params` (written with
    `alignax.models.hf.save_hf` to a temporary directory, removed once they are loaded, and read
    with `from_pretrained`): both sides start from the same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    from alignax.models.hf import save_hf

    with tempfile.TemporaryDirectory(prefix="alignax-bench-hf-") as directory:
        save_hf(directory, shape.model_config(), jax.device_get(params))
        return [
            AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
            for _ in range(count)
        ]


def word_tokenizer(vocab: int, *, eos_id: int = 2):
    """A tokenizer for the peers' trainers over token ids written as words "<id>" (`as_words`,
    split on whitespace; the brackets keep a special token such as "<1>" from matching inside
    "<107>"): pad 0, unknown 1, end of sequence `eos_id` (added past the model's vocabulary when
    `eos_id >= vocab`)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {f"<{i}>": i for i in range(max(vocab, eos_id + 1))}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="<1>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<0>", eos_token=f"<{eos_id}>", unk_token="<1>"
    )


def as_words(ids) -> str:
    """Token ids as the text `word_tokenizer` reads back into them."""
    return " ".join(f"<{int(i)}>" for i in ids)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join(
        [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )
