"""Model FLOPs utilisation of the LM train step against this machine's measured matmul peak.

Model FLOPs of one step: 6 x (matmul parameters: every weight but the embedding table) x tokens
for the dense layers, plus 12 x layers x batch x length^2 x d_model for attention's two
products (forward and backward), as in the PaLM paper's appendix B; a frozen forward is a third
of that (`forward_flops`), the count every benchmark uses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alignax import objectives, sharding, steps
from alignax.models import build_model
from alignax.models.presets import mesh_config, model_config
from alignax.state import TrainState
from benchmarks.common import compiled_step

PEAK_SIZES = (512, 1024, 2048)


def matmul_peak_cases() -> dict:
    """One float32 n x n x n matmul per size; the peak is the best rate over sizes."""
    cases = {}
    for n in PEAK_SIZES:
        a = jnp.asarray(np.random.default_rng(n).standard_normal((n, n)), jnp.float32)
        product = jax.jit(lambda x, y: x @ y)
        cases[n] = lambda product=product, a=a: jax.block_until_ready(product(a, a))
    return cases


def matmul_flops(n: int) -> float:
    return 2.0 * n**3


def forward_flops(config, rows: int, length: int) -> float:
    """Model FLOPs of one forward pass over `rows` sequences of `length` tokens: 2 x matmul
    parameters x tokens, plus 4 x layers x rows x length^2 x d_model for attention's two
    products. A trained forward and backward is three forwards (`train_step_flops`)."""
    c = config
    embed = c.vocab_size * c.d_model
    # An untied embedding table is only gathered from; a tied one is also the LM head.
    matmul_params = c.num_params() - (0 if c.tie_embeddings else embed)
    attention = 4.0 * c.num_layers * rows * length**2 * c.d_model
    return 2.0 * matmul_params * rows * length + attention


def train_step_flops(config, batch: int, length: int) -> float:
    return 3.0 * forward_flops(config, batch, length)


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
