"""TrainState: the one pytree a train step reads and returns.

`params` is whatever the optimizer trains: a policy's params, or {'policy': ..., 'value': ...}
when PPO trains a separate value model. Frozen models ride along in their own slots so that a
step closes over nothing but static structure. `aux` holds small pytrees of loop state (KL
controller, running reward statistics) that checkpoint with the rest.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from alignax.models import Params


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Params
    opt_state: optax.OptState
    ref_params: Params | None = None
    reward_params: Params | None = None
    aux: dict[str, Any] = struct.field(default_factory=dict)

    @classmethod
    def create(
        cls, params: Params, tx: optax.GradientTransformation, mesh: Mesh, **slots
    ) -> TrainState:
        """Step 0 with the optimizer state sharded like `params`; every other leaf not already
        laid out on `mesh` (step, aux) is replicated on it."""
        replicated = NamedSharding(mesh, PartitionSpec())
        opt_state = jax.jit(tx.init, out_shardings=_opt_shardings(tx, params, mesh))(params)
        # Frozen slots get buffers of their own: a reference policy that starts as the trained
        # params must survive the step donating (and overwriting) the params.
        slots = {k: jax.tree.map(lambda x: jnp.array(x, copy=True), v) for k, v in slots.items()}
        state = cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, **slots)
        return jax.tree.map(
            lambda x: x if _on_mesh(x, mesh) else jax.device_put(x, replicated), state
        )

    @classmethod
    def abstract(
        cls, params: Params, tx: optax.GradientTransformation, mesh: Mesh, **slots
    ) -> TrainState:
        """The shapes, dtypes and shardings `create` gives, as `jax.ShapeDtypeStruct`s, from
        params that are themselves ShapeDtypeStructs with shardings: a state to compile a step
        for ahead of time (e.g. for a TPU slice's devices) without allocating it."""
        replicated = NamedSharding(mesh, PartitionSpec())

        def shape(x, sharding):
            return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x), sharding=sharding)

        opt_state = jax.tree.map(
            shape, jax.eval_shape(tx.init, params), _opt_shardings(tx, params, mesh)
        )
        state = cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, **slots)
        return jax.tree.map(lambda x: x if _on_mesh(x, mesh) else shape(x, replicated), state)

    def apply_gradients(self, grads: Params, tx: optax.GradientTransformation) -> TrainState:
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
        )


def _on_mesh(x, mesh: Mesh) -> bool:
    sharding = getattr(x, "sharding", None)
    return isinstance(sharding, NamedSharding) and sharding.mesh == mesh


def _opt_shardings(tx: optax.GradientTransformation, params: Params, mesh: Mesh):
    """The optimizer state's shardings: moments take their param's sharding; counters and other
    non-param leaves replicate."""
    return optax.tree_map_params(
        tx,
        lambda _, param_sharding: param_sharding,
        jax.eval_shape(tx.init, params),
        jax.tree.map(lambda x: x.sharding, params),
        transform_non_params=lambda _: NamedSharding(mesh, PartitionSpec()),
    )


def state_shardings(state: TrainState):
    """The sharding of every leaf of a (concrete) state: the in/out shardings of its step."""
    return jax.tree.map(lambda x: x.sharding, state)
