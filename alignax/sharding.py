"""One mesh with axes (data, fsdp, tensor), logical-axis rules, and param/batch shardings.

Parameters carry logical axis names (set in alignax/models/transformer.py); `LOGICAL_RULES` is
the one place that maps them onto mesh axes. A dimension whose size the mesh axis does not divide
is replicated instead (e.g. 2 kv-heads on a tensor axis of 4), so every preset runs on every mesh.
Batches are split along their leading dimension over ('data', 'fsdp'), and so are the model's
activations in a step compiled by `steps.jit_step` (`batch_split`), whatever the weights' split.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

if TYPE_CHECKING:  # the model imports this module for `batch_split`
    from alignax.models import Model, Params

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

LOGICAL_RULES: dict[str, str | None] = {
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "head_dim": None,
    "layers": None,
    "norm": None,
    "positions": None,
}


def batch_split(x: jax.Array) -> jax.Array:
    """`x` (an activation, batch first) kept split over (data, fsdp) when traced for a mesh
    (`steps.jit_step` traces under the mesh's axes) and its rows divide evenly; unchanged
    otherwise. Without it XLA's sharding propagation may lay activations out after the
    FSDP-sharded weights instead: 1b's SFT step over 256 TPU v5e chips as fsdp 256 asked for
    31.7 GiB of temporaries per chip (refused by the compiler), 1.4 GiB with it; the `small`
    preset's over 16 chips 979 MiB, 26 MiB with it (`benchmarks/aot.py`)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not set(BATCH_AXES) <= set(mesh.axis_names):
        return x
    ways = math.prod(mesh.shape[axis] for axis in BATCH_AXES)
    if ways == 1 or x.shape[0] % ways:
        return x
    return jax.lax.with_sharding_constraint(x, PartitionSpec(BATCH_AXES, *([None] * (x.ndim - 1))))


def default_mesh_config() -> ml_collections.ConfigDict:
    """Mesh shape; -1 takes all remaining devices (at most one axis may be -1)."""
    return ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})


def default_distributed_config() -> ml_collections.ConfigDict:
    """`config.distributed`, read when `config.multihost` is True. The defaults ("", 0, -1) leave
    each to `jax.distributed.initialize`: detected on Cloud TPU, SLURM, Open MPI and Kubernetes,
    the coordinator also from $JAX_COORDINATOR_ADDRESS. Set all three to launch by hand (e.g.
    two processes on one host: "localhost:12345", 2, and 0 or 1)."""
    return ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 0, "process_id": -1}
    )


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """Multi-host hook: with `config.multihost`, every process of a pod slice / multi-node job
    joins JAX's distributed runtime (once per process) before anything touches a device."""
    if not config.multihost or jax.distributed.is_initialized():
        return
    given = config.distributed
    jax.distributed.initialize(
        coordinator_address=given.coordinator_address or None,
        num_processes=given.num_processes or None,
        process_id=given.process_id if given.process_id >= 0 else None,
    )


def make_mesh(mesh_config: ml_collections.ConfigDict, devices=None) -> Mesh:
    """The mesh of `mesh_config` over `devices` (default: all). A shape without -1 that needs
    fewer devices than a single process has takes the first ones (a tiny model runs fastest on
    one); a multi-host job must use every device."""
    devices = jax.devices() if devices is None else devices
    shape = [mesh_config[axis] for axis in MESH_AXES]
    if shape.count(-1) > 1:
        raise ValueError(f"at most one of mesh.{MESH_AXES} may be -1, got {shape}")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if len(devices) % known:
            raise ValueError(
                f"mesh {dict(zip(MESH_AXES, shape))} does not divide {len(devices)} devices"
            )
        shape[shape.index(-1)] = len(devices) // known
    if math.prod(shape) < len(devices) and jax.process_count() == 1:
        devices = devices[: math.prod(shape)]
    if math.prod(shape) != len(devices):
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, shape))} needs {math.prod(shape)} devices, "
            f"{len(devices)} are available (set config.mesh.* so the product matches)"
        )
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES)


def logical_to_mesh(logical: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """Mesh PartitionSpec for a param with these logical axes and this shape."""
    used: set[str] = set()
    spec = []
    for name, size in zip(logical, shape, strict=True):
        axis = LOGICAL_RULES[name] if name is not None else None
        if axis is None or axis in used or size % mesh.shape[axis]:
            spec.append(None)
        else:
            spec.append(axis)
            used.add(axis)
    return PartitionSpec(*spec)


def param_shardings(model: Model, mesh: Mesh, abstract_params: Params | None = None) -> Params:
    """NamedShardings for `model`'s params (or for another tree with the same logical axes)."""
    abstract = model.abstract_params if abstract_params is None else abstract_params
    return jax.tree.map(
        lambda spec, leaf: NamedSharding(mesh, logical_to_mesh(spec, leaf.shape, mesh)),
        model.logical_axes,
        abstract,
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )


def abstract_params(model: Model, mesh: Mesh) -> Params:
    """`model`'s params as ShapeDtypeStructs laid out on `mesh`: what a step is compiled for
    ahead of time, on devices this process need not have (a TPU slice's)."""
    return jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        model.abstract_params,
        param_shardings(model, mesh),
    )


def init_params(model: Model, rng: jax.Array, mesh: Mesh) -> Params:
    """Params created directly in their shards (no full copy on one device first). The program
    is compiled once per model and mesh in a process."""
    key = (model, mesh)
    if key not in _INIT_PROGRAMS:
        _INIT_PROGRAMS[key] = jax.jit(model.init, out_shardings=param_shardings(model, mesh))
    return _INIT_PROGRAMS[key](rng)


_INIT_PROGRAMS: dict[tuple, Callable] = {}


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_shardings(shapes: dict[str, tuple[int, ...]], mesh: Mesh) -> dict[str, NamedSharding]:
    """The sharding of each batch entry (split along its leading dimension over data x fsdp),
    after checking that the rows split evenly over the mesh's devices and over the processes
    that hold them: every process must place the same number of rows (on a pod slice, each host
    feeds its own chips). Errors name the batch entry and the mesh."""
    return {key: _checked_batch_sharding(key, tuple(shape), mesh) for key, shape in shapes.items()}


@functools.lru_cache(maxsize=256)
def _checked_batch_sharding(key: str, shape: tuple[int, ...], mesh: Mesh) -> NamedSharding:
    batch_size = mesh.shape["data"] * mesh.shape["fsdp"]
    if shape[0] % batch_size:
        raise ValueError(
            f"batch[{key!r}] has leading dimension {shape[0]}, not divisible by the "
            f"mesh's data*fsdp = {batch_size} (mesh {dict(mesh.shape)})"
        )
    sharding = batch_sharding(mesh, len(shape))
    rows: dict[int, set[int]] = {}
    for device, index in sharding.devices_indices_map(shape).items():
        rows.setdefault(device.process_index, set()).update(range(*index[0].indices(shape[0])))
    counts = {process: len(held) for process, held in rows.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"batch[{key!r}] ({shape[0]} rows) splits unevenly over the processes of mesh "
            f"{dict(mesh.shape)}: rows per process {counts}"
        )
    return sharding


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Places a host batch (dict of arrays) on the mesh, split along the leading dimension. Every
    process of a multi-host job holds the same global batch (the data pipeline is a pure function
    of the seed and step) and places only the rows of its own devices."""
    batch = {key: np.asarray(value) for key, value in batch.items()}
    shardings = batch_shardings({key: value.shape for key, value in batch.items()}, mesh)
    return {
        key: jax.make_array_from_callback(
            value.shape, shardings[key], lambda index, v=value: v[index]
        )
        for key, value in batch.items()
    }


def abstract_batch(batch: dict, mesh: Mesh) -> dict:
    """`shard_batch`'s layout as ShapeDtypeStructs (the same checks): a batch to compile for."""
    batch = {key: np.asarray(value) for key, value in batch.items()}
    shardings = batch_shardings({key: value.shape for key, value in batch.items()}, mesh)
    return {
        key: jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=shardings[key])
        for key, value in batch.items()
    }
