"""LoRA (Hu et al. 2021) as a pure transform of the params pytree.

    lora = LoraConfig(rank=8, alpha=16.0, targets=("q", "v"))
    adapters = init_lora(jax.random.key(0), model, lora, mesh=mesh)  # B = 0: merge == base
    params = merge(base_params, adapters, lora)                     # W + (alpha / rank) A @ B
    loss_fn = lora_loss_fn(lm_loss_fn(model), lora)                 # differentiates adapters only
    state = TrainState.create(adapters, tx, mesh, ref_params=base_params)

The adapters are the trained `params` of the `TrainState`; the base weights ride in the frozen
`ref_params` slot. So the reference policy of DPO/PPO (which reads `state.ref_params`) is the base
without adapters, with no second copy of the weights, and the optimizer state is adapter-sized.
`merge` gives ordinary params for export (`alignax.models.hf.save_hf`) or sampling.

Each target weight W of shape [layers, *in, *out] (q, k, v: [L, d | heads, head_dim]; out:
[L, heads, head_dim | d]; gate, up: [L, d | mlp]; down: [L, mlp | d]) gets A [L, *in, rank] and
B [L, rank, *out]; W' = W + (alpha / rank) * A @ B. A starts N(0, 1/fan_in), B at zero.
`merge` runs inside the caller's jit: the merged weights are temporaries of the step (the
forward of a scanned layer stack reads them like the base weights), never a stored copy.

A head the base does not have (a reward model's `reward_head`) cannot be adapted from zero: it
trains in full beside the adapters, as `adapters[HEADS] = {name: array}`, and `merge` puts it
in place of the base's (PEFT's `modules_to_save`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from alignax.models import Model, Params
from alignax.sharding import logical_to_mesh

# Target name -> (path in params, number of input dims after the layer axis).
TARGETS = {
    "q": (("blocks", "attn", "q"), 1),
    "k": (("blocks", "attn", "k"), 1),
    "v": (("blocks", "attn", "v"), 1),
    "out": (("blocks", "attn", "out"), 2),
    "gate": (("blocks", "mlp", "gate"), 1),
    "up": (("blocks", "mlp", "up"), 1),
    "down": (("blocks", "mlp", "down"), 1),
}


# The entry of the adapters that holds params trained in full (new heads), not adapters.
HEADS = "heads"


def default_lora_config() -> ml_collections.ConfigDict:
    """`config.lora`: rank 0 turns LoRA off; targets name the adapted weights (see TARGETS)."""
    return ml_collections.ConfigDict(
        {"rank": 0, "alpha": 16.0, "targets": ("q", "k", "v", "out", "gate", "up", "down")}
    )


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    rank: int
    alpha: float
    targets: tuple[str, ...]

    def __post_init__(self):
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"lora.rank must be a positive integer, got {self.rank!r}")
        if bad := [t for t in self.targets if t not in TARGETS]:
            raise ValueError(f"lora.targets has unknown {bad}; allowed: {tuple(TARGETS)}")
        if not self.targets:
            raise ValueError("lora.targets is empty")

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> LoraConfig:
        return cls(rank=config.rank, alpha=float(config.alpha), targets=tuple(config.targets))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def _shapes(model: Model, lora: LoraConfig) -> dict[str, tuple[tuple, tuple, tuple]]:
    """target -> (A shape, B shape, (A logical axes, B logical axes))."""
    out = {}
    for target in lora.targets:
        path, num_in = TARGETS[target]
        tree, axes = model.abstract_params, model.logical_axes
        for key in path:
            if key not in tree:
                raise ValueError(
                    f"lora.targets has {target!r} but the model has no {'/'.join(path)} "
                    f"(model.mlp={model.config.mlp!r})"
                )
            tree, axes = tree[key], axes[key]
        shape, logical = tree.shape, tuple(axes)
        layers, inputs, outputs = shape[:1], shape[1 : 1 + num_in], shape[1 + num_in :]
        out[target] = (
            (*layers, *inputs, lora.rank),
            (*layers, lora.rank, *outputs),
            (
                PartitionSpec(*logical[: 1 + num_in], None),
                PartitionSpec(logical[0], None, *logical[1 + num_in :]),
            ),
        )
    return out


def lora_shardings(model: Model, lora: LoraConfig, mesh: Mesh) -> Params:
    """NamedShardings of the adapters, from the base weights' logical axes."""
    return {
        target: {
            name: NamedSharding(mesh, logical_to_mesh(spec, shape, mesh))
            for name, shape, spec in (("a", a_shape, specs[0]), ("b", b_shape, specs[1]))
        }
        for target, (a_shape, b_shape, specs) in _shapes(model, lora).items()
    }


def init_lora(
    rng: jax.Array, model: Model, lora: LoraConfig, *, mesh: Mesh | None = None
) -> Params:
    """Adapters {target: {'a': A, 'b': B}}: A ~ N(0, 1/fan_in), B = 0, so merge(base) == base.
    With `mesh`, created directly in their shards."""
    shapes = _shapes(model, lora)
    dtype = model.config.param_dtype

    def create(rng):
        # One normal draw sliced into every A: XLA compiles each random op separately, and
        # on CPU that compile dominates for small adapters.
        sizes = [math.prod(a_shape) for a_shape, _, _ in shapes.values()]
        normal = jax.random.normal(rng, (sum(sizes),), dtype)
        adapters, offset = {}, 0
        for size, (target, (a_shape, b_shape, _)) in zip(sizes, shapes.items(), strict=True):
            fan_in = math.prod(a_shape[1:-1])
            a = normal[offset : offset + size].reshape(a_shape) / math.sqrt(fan_in)
            adapters[target] = {"a": a, "b": jnp.zeros(b_shape, dtype)}
            offset += size
        return adapters

    out_shardings = None if mesh is None else lora_shardings(model, lora, mesh)
    return jax.jit(create, out_shardings=out_shardings)(rng)


def delta(adapter: Params, scale: float) -> jax.Array:
    """scale * A @ B with A [L, *in, r], B [L, r, *out] -> [L, *in, *out], in float32."""
    a, b = adapter["a"].astype(jnp.float32), adapter["b"].astype(jnp.float32)
    layers, rank = a.shape[0], a.shape[-1]
    in_shape, out_shape = a.shape[1:-1], b.shape[2:]
    flat = jnp.einsum("lir,lro->lio", a.reshape(layers, -1, rank), b.reshape(layers, rank, -1))
    return scale * flat.reshape(layers, *in_shape, *out_shape)


def merge(params: Params, adapters: Params, lora: LoraConfig) -> Params:
    """`params` with W + (alpha / rank) A @ B on every adapted weight and the fully trained
    `adapters[HEADS]` in place (others shared, not copied). Pure: call it inside the step's jit,
    or once to export merged weights."""
    merged = jax.tree.map(lambda x: x, params)  # new dicts, same leaves
    merged.update(adapters.get(HEADS, {}))
    for target, adapter in adapters.items():
        if target == HEADS:
            continue
        path, _ = TARGETS[target]
        parent = merged
        for key in path[:-1]:
            parent = parent[key]
        weight = parent[path[-1]]
        parent[path[-1]] = (weight.astype(jnp.float32) + delta(adapter, lora.scale)).astype(
            weight.dtype
        )
    return merged


def lora_loss_fn(loss_fn, lora: LoraConfig):
    """A loss of the adapters, from a loss of full params: `state.params` holds the adapters and
    `state.ref_params` the frozen base (which reference-policy losses read as the reference)."""

    def adapted_loss_fn(adapters, state, batch, rng):
        return loss_fn(merge(state.ref_params, adapters, lora), state, batch, rng)

    return adapted_loss_fn


def num_lora_params(adapters: Params) -> int:
    return sum(x.size for x in jax.tree.leaves(adapters))


__all__ = [
    "HEADS",
    "TARGETS",
    "LoraConfig",
    "default_lora_config",
    "delta",
    "init_lora",
    "lora_loss_fn",
    "lora_shardings",
    "merge",
    "num_lora_params",
]
