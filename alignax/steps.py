"""Pure train/eval step builders: `train_step(state, batch, rng) -> (state, metrics)`.

A loss function has the signature `loss_fn(params, state, batch, rng) -> (loss, metrics)`: it
differentiates `params` and reads frozen models (reference, reward) from `state`. `make_train_step`
turns it into a step (with optional gradient accumulation under `lax.scan`), and `jit_step`
compiles it once with explicit shardings and the state donated.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from alignax import sharding
from alignax.state import TrainState, state_shardings

LossFn = Callable[..., tuple[jax.Array, dict]]


def make_train_step(
    loss_fn: LossFn, tx: optax.GradientTransformation, *, grad_accum_steps: int = 1
):
    """Step that averages gradients over `grad_accum_steps` equal slices of the batch."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state: TrainState, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        if grad_accum_steps == 1:
            (loss, metrics), grads = grad_fn(state.params, state, batch, rng)
        else:
            micro = jax.tree.map(
                lambda x: x.reshape(grad_accum_steps, x.shape[0] // grad_accum_steps, *x.shape[1:]),
                batch,
            )

            def accumulate(carry, inputs):
                index, micro_batch = inputs
                out, grads = grad_fn(
                    state.params, state, micro_batch, jax.random.fold_in(rng, index)
                )
                return jax.tree.map(jnp.add, carry, (out, grads)), None

            zeros = jax.tree.map(
                jnp.zeros_like,
                jax.eval_shape(
                    lambda: grad_fn(state.params, state, jax.tree.map(lambda x: x[0], micro), rng)
                ),
            )
            summed, _ = jax.lax.scan(accumulate, zeros, (jnp.arange(grad_accum_steps), micro))
            (loss, metrics), grads = jax.tree.map(lambda x: x / grad_accum_steps, summed)
        new_state = state.apply_gradients(grads, tx)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
        return new_state, metrics

    return train_step


def make_eval_step(loss_fn: LossFn):
    def eval_step(state: TrainState, batch: dict, rng: jax.Array):
        loss, metrics = loss_fn(state.params, state, batch, rng)
        return {**metrics, "loss": loss}

    return eval_step


def jit_step(step_fn, state: TrainState, batch: dict, mesh: Mesh, *, returns_state: bool = True):
    """Compiles `step_fn(state, batch, rng)` once: state keeps its shardings (and is donated),
    the batch is split over (data, fsdp), the key and the metrics are replicated; the step is
    traced under the mesh's axes (activations stay split over the batch axes)."""
    state_sh = state_shardings(state)
    batch_sh = {k: sharding.batch_sharding(mesh, jnp.ndim(v)) for k, v in batch.items()}
    rep = sharding.replicated(mesh)

    def on_mesh(state, batch, rng):
        # Traced under the mesh's axes, so the model keeps activations split over the batch
        # axes (`sharding.batch_split`).
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return step_fn(state, batch, rng)

    return jax.jit(
        on_mesh,
        in_shardings=(state_sh, batch_sh, rep),
        out_shardings=(state_sh, rep) if returns_state else rep,
        donate_argnums=(0,) if returns_state else (),
    )
