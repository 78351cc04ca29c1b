"""Model FLOPs utilisation of the LM train step against this machine's measured matmul peak
(the count and the peak: benchmarks/roofline.py)."""

from __future__ import annotations

import jax
import numpy as np
import optax

from alignax import objectives, sharding, steps
from alignax.models import build_model
from alignax.models.presets import mesh_config, model_config
from alignax.state import TrainState
from benchmarks.common import compiled_step
from benchmarks.roofline import train_step_flops


def lm_train_step(preset: str, batch: int, length: int):
    """The preset's LM train step (AdamW) on random tokens: (model, step_fn, state, batch,
    mesh). The MFU case and the scaling tables (benchmarks/scaling.py) both time it."""
    model = build_model(model_config(preset))
    mesh = sharding.make_mesh(mesh_config(preset))
    tx = optax.adamw(1e-4)
    state = TrainState.create(sharding.init_params(model, jax.random.key(0), mesh), tx, mesh)
    tokens = np.random.default_rng(0).integers(3, model.config.vocab_size, (batch, length))
    ones = np.ones_like(tokens, np.int32)
    data = sharding.shard_batch(
        {"tokens": tokens.astype(np.int32), "input_mask": ones, "loss_mask": ones}, mesh
    )
    step_fn = steps.make_train_step(objectives.lm_loss_fn(model), tx)
    return model, step_fn, state, data, mesh


def train_step(preset: str, batch: int, length: int):
    """A zero-argument blocking call of the preset's jitted LM train step, and its model FLOPs."""
    model, step_fn, state, data, mesh = lm_train_step(preset, batch, length)
    return compiled_step(step_fn, state, data, mesh), train_step_flops(model.config, batch, length)
