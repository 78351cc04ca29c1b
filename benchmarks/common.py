"""Shared pieces of the benchmarks: the compared shape, interleaved timing, the table.

Timing rule: every case of a comparison is compiled and warmed up first, then the cases run in
turn (A B A B ...) for `rounds` rounds, so that a slow spell of a shared machine hits all of them
alike; a case's time is the median of its rounds and its spread the min-max range. A speed-up is
the ratio of two cases' medians; its spread is that of the per-round ratios (`speedup_spread`),
each round's two times taken back to back.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from alignax import sharding, steps
from alignax.models import ModelConfig, default_model_config


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

    @property
    def length(self) -> int:
        return self.prompt_len + self.response_len

    def config(self) -> ModelConfig:
        return ModelConfig.from_config(self.model_config())

    def describe(self) -> str:
        return (
            f"Llama layout, {self.layers} layers, d {self.d_model}, {self.heads} heads x "
            f"{self.d_model // self.heads}, SwiGLU {self.mlp_dim}, vocab {self.vocab}, untied, "
            f"float32"
        )


def one_device_mesh():
    return sharding.make_mesh(ml_collections.ConfigDict({"data": 1, "fsdp": 1, "tensor": 1}))


def clipped_adamw(learning_rate: float) -> optax.GradientTransformation:
    """The peer comparisons' optimizer: AdamW (betas 0.9/0.999, no decay) after global-norm
    clipping at 1.0, as `trl_training_args` configures the TRL side."""
    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(learning_rate, b1=0.9, b2=0.999, weight_decay=0.0),
    )


def even_token_share(state, tokens, input_mask, loss_mask):
    """A reward any policy can be scored with: the share of even token ids in the response."""
    del state, input_mask
    even = (tokens % 2 == 0) * loss_mask
    return jnp.sum(even, -1) / jnp.maximum(jnp.sum(loss_mask, -1), 1)


@dataclasses.dataclass
class Timing:
    name: str
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def spread(self) -> str:
        return f"{min(self.seconds) * 1e3:.0f}-{max(self.seconds) * 1e3:.0f}"


def speedup_spread(slow: Timing, fast: Timing) -> str:
    """Quartiles and range of the per-round ratios slow / fast, e.g. 'quartiles 1.55-1.81,
    range 1.10-2.02': how far one round's comparison can stray from the ratio of medians."""
    ratios = sorted(s / f for s, f in zip(slow.seconds, fast.seconds, strict=True))
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return f"quartiles {q1:.2f}-{q3:.2f}, range {ratios[0]:.2f}-{ratios[-1]:.2f}"


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


def trl_training_args(learning_rate: float) -> dict:
    """The TrainingArguments every TRL side shares: `clipped_adamw`'s optimizer with a constant
    schedule, on the CPU in float32, nothing logged or saved."""
    return dict(
        learning_rate=learning_rate,
        adam_beta1=0.9,
        adam_beta2=0.999,
        weight_decay=0.0,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        report_to=[],
        use_cpu=True,
        bf16=False,
        logging_steps=10**9,
        save_strategy="no",
        max_steps=10**6,
    )


def trl_runner(trainer, model, inputs, scratch: tempfile.TemporaryDirectory):
    """A zero-argument call of one optimizer step of a TRL trainer on `inputs`, as the Trainer's
    loop runs it: `training_step` (forwards, loss, backward), clipping, `optimizer.step()`, the
    scheduler and `zero_grad()`. `scratch` (the trainer's files) is removed with the runner."""
    trainer.create_optimizer_and_scheduler(num_training_steps=trainer.args.max_steps)
    trainer.current_gradient_accumulation_steps = 1  # set by the Trainer's loop, replaced here
    model.train()

    def run():
        loss = trainer.training_step(model, inputs, None)
        trainer.accelerator.clip_grad_norm_(model.parameters(), trainer.args.max_grad_norm)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        model.zero_grad()
        return float(loss)

    run.output_directory = scratch
    run.trainer = trainer  # for inspection (tests/test_benchmarks.py)
    return run


def trl_peer() -> str:
    import torch
    import trl

    return f"TRL {trl.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)"


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
