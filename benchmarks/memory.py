"""Peak training memory of SmolLM2-135M, with and without LoRA: XLA's own accounting of the
compiled SFT and DPO steps (`compiled.memory_analysis()`: arguments, outputs and temporaries,
donated buffers counted once), so exact and machine-independent; the steps are compiled, not run.

    python -m benchmarks.run --only memory

The steps are the stages' own (`alignax.workflows.runner.trainable_state`, the LM and DPO
losses, AdamW): full fine-tuning keeps params, two Adam moments and, for DPO, a frozen
reference copy; LoRA trains adapters only and its base doubles as the DPO reference (no second
copy).
"""

from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np
import optax

from alignax import logprobs, objectives, sharding, steps
from alignax.models import build_model
from alignax.models.lora import default_lora_config, lora_loss_fn
from alignax.models.presets import mesh_config, model_config
from alignax.workflows.runner import trainable_state
from benchmarks.common import markdown_table
from configs import dpo as dpo_config

PRESET = "smollm2_135m"
BATCH, LENGTH = 4, 512  # SFT rows; DPO: BATCH pairs of LENGTH-token sequences
EVERY = ("q", "k", "v", "out", "gate", "up", "down")
# (name, LoRA rank (0: full fine-tuning), LoRA targets, remat: recompute each layer's
# activations in the backward pass instead of keeping them)
SETUPS = (
    ("full fine-tuning", 0, (), False),
    ("LoRA r8, q v", 8, ("q", "v"), False),
    ("LoRA r8, every projection", 8, EVERY, False),
    ("full fine-tuning, remat", 0, (), True),
    ("LoRA r8, q v, remat", 8, ("q", "v"), True),
)


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def _batch(kind: str, vocab: int, length: int) -> dict:
    rng = np.random.default_rng(0)
    shape = (BATCH, length) if kind == "sft" else (BATCH, 2, length)
    tokens = rng.integers(3, vocab, shape).astype(np.int32)
    loss_mask = np.ones_like(tokens)
    loss_mask[..., : length // 2] = 0  # the first half is the prompt
    batch = {"tokens": tokens, "input_mask": np.ones_like(tokens), "loss_mask": loss_mask}
    if kind == "dpo":
        batch["ranks"] = np.tile(np.arange(2, dtype=np.int32), (BATCH, 1))
    return batch


def stage_step(
    kind: str,
    model_config: ml_collections.ConfigDict,
    mesh,
    rank: int,
    targets: tuple[str, ...] = (),
    *,
    params=None,
    batch: dict | None = None,
    learning_rate: float = 1e-5,
    scored_logits_only: bool = False,
):
    """(jitted SFT or DPO step, its state, its batch) on `mesh` as the stages build them:
    `params` (None: initialised at random) fine-tuned in full (`rank` 0) or through LoRA
    adapters of `rank` on `targets` (all of the stages' default targets when empty), AdamW;
    `batch` (None: `_batch`'s random tokens of `LENGTH`); `scored_logits_only`: the LM head
    only where the batch scores tokens."""
    model = build_model(model_config, heads=("lm",))
    if params is None:
        params = sharding.init_params(model, jax.random.key(0), mesh)
    lora = default_lora_config()
    lora.update(rank=rank, **({"targets": targets} if targets else {}))
    config = ml_collections.ConfigDict({"lora": lora})
    tx = optax.adamw(learning_rate)
    if batch is None:
        batch = _batch(kind, model.config.vocab_size, min(LENGTH, model.config.max_len))
    width = logprobs.scored_width(batch["loss_mask"]) if scored_logits_only else None
    if kind == "sft":
        loss_fn, slots, wrap = objectives.lm_loss_fn(model, width), {}, lambda step: step
    else:
        loss_config = dpo_config.get_config().loss  # sigmoid DPO, beta 0.1
        loss_fn = objectives.preference_loss_fn(model, loss_config, width)
        slots = objectives.preference_state_slots(loss_config, params)
        wrap = lambda step: objectives.preference_train_step(step, loss_config)  # noqa: E731
    state, lora = trainable_state(config, model, params, tx, mesh, jax.random.key(1), slots=slots)
    if lora is not None:
        loss_fn = lora_loss_fn(loss_fn, lora)
    batch = sharding.shard_batch(batch, mesh)
    step = steps.jit_step(wrap(steps.make_train_step(loss_fn, tx)), state, batch, mesh)
    return step, state, batch


def compiled_step(
    kind: str, rank: int, targets: tuple[str, ...], remat: bool = False, preset: str = PRESET
):
    """(compiled step, trained parameter count, seconds to compile) of the SFT or DPO step."""
    shape = model_config(preset)
    shape.remat = remat
    mesh = sharding.make_mesh(mesh_config(preset))
    step, state, batch = stage_step(kind, shape, mesh, rank, targets)
    start = time.perf_counter()
    compiled = step.lower(state, batch, jax.random.key(2)).compile()
    trained = sum(x.size for x in jax.tree.leaves(state.params))
    return compiled, trained, time.perf_counter() - start


def memory_table(preset: str = PRESET, setups: tuple[str, ...] = ()) -> tuple[str, list[dict]]:
    """One row per step (SFT, DPO) and setup (`SETUPS`, or those of them named in `setups`)."""
    names = [name for name, *_ in SETUPS]
    unknown = set(setups) - set(names)
    if unknown:
        raise ValueError(f"setups: no setup named {sorted(unknown)} in {names}")
    rows, records = [], []
    for kind in ("sft", "dpo"):
        for name, rank, targets, remat in SETUPS:
            if setups and name not in setups:
                continue
            compiled, trained, seconds = compiled_step(kind, rank, targets, remat, preset)
            m = compiled.memory_analysis()
            peak = m.argument_size_in_bytes + m.output_size_in_bytes
            peak += m.temp_size_in_bytes - m.alias_size_in_bytes
            record = {
                "step": kind,
                "setup": name,
                "remat": remat,
                "trained_params": trained,
                "arguments_mib": m.argument_size_in_bytes / 2**20,
                "temp_mib": m.temp_size_in_bytes / 2**20,
                "peak_mib": peak / 2**20,
                "compile_s": seconds,
            }
            records.append(record)
            rows.append(
                [
                    kind.upper(),
                    name,
                    f"{trained / 1e6:.2f}M",
                    _mib(m.argument_size_in_bytes),
                    _mib(m.temp_size_in_bytes),
                    _mib(peak),
                ]
            )
    header = ["step", "setup", "trained params", "state + batch MiB", "temp MiB", "peak MiB"]
    return markdown_table(header, rows), records
