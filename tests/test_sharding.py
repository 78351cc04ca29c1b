"""Sharded == unsharded on 8 fake CPU devices; params are laid out as the logical rules say."""

import functools

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from alignax import objectives, sharding, steps
from alignax.state import TrainState
from tests.helpers import MESH_SHAPES, mesh_of, pad_rows, tiny_model


def _batch():
    rng = np.random.default_rng(0)
    rows = [list(rng.integers(3, 32, size=rng.integers(4, 12))) for _ in range(8)]
    tokens, mask = pad_rows(rows, 12, side="right")
    return {
        "tokens": np.asarray(tokens),
        "input_mask": np.asarray(mask),
        "loss_mask": np.asarray(mask),
    }


@functools.lru_cache
def _single_device_result():
    return _train_one_step(mesh_of((1, 1, 1), jax.devices()[:1]))


def _train_one_step(mesh):
    model = tiny_model(d_model=32, num_heads=4, num_kv_heads=2, mlp_dim=64)
    params = sharding.init_params(model, jax.random.key(0), mesh)
    # SGD, not Adam: Adam's first step is ~lr*sign(grad), which turns float32 rounding in
    # near-zero gradients into lr-sized differences and would hide what is being compared.
    tx = optax.sgd(0.5, momentum=0.9)
    state = TrainState.create(params, tx, mesh)
    batch = sharding.shard_batch(_batch(), mesh)
    logits = jax.jit(lambda p, b: model.apply(p, b["tokens"], b["input_mask"])["logits"])(
        params, batch
    )
    step = steps.jit_step(
        steps.make_train_step(objectives.lm_loss_fn(model), tx), state, batch, mesh
    )
    state, metrics = step(state, batch, jax.random.key(1))
    return model, np.asarray(logits), jax.device_get(state.params), float(metrics["loss"]), state


@pytest.mark.parametrize("shape", MESH_SHAPES)
def test_forward_and_gradient_step_match_single_device(shape):
    _, logits_1, params_1, loss_1, _ = _single_device_result()
    _, logits_n, params_n, loss_n, _ = _train_one_step(mesh_of(shape))
    np.testing.assert_allclose(logits_n, logits_1, atol=1e-5, rtol=1e-5)
    assert loss_n == pytest.approx(loss_1, rel=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5), params_n, params_1
    )


def test_params_are_sharded_as_the_rules_say():
    mesh = mesh_of((2, 2, 2))
    *_, state = _train_one_step(mesh)
    p = state.params
    assert p["embed"].sharding.spec == P("tensor", "fsdp")  # vocab x embed
    assert p["blocks"]["mlp"]["up"].sharding.spec == P(None, "fsdp", "tensor")
    assert p["blocks"]["attn"]["k"].sharding.spec == P(None, "fsdp", "tensor", None)
    shard = p["blocks"]["mlp"]["up"].addressable_shards[0].data
    assert shard.shape == (2, 16, 32)  # full (2, 32, 64) split 2-way on embed and on mlp
    # Optimizer moments live next to their params.
    trace = state.opt_state[0].trace
    assert trace["blocks"]["mlp"]["up"].sharding.spec == P(None, "fsdp", "tensor")


def test_indivisible_dimension_is_replicated_not_an_error():
    mesh = mesh_of((1, 1, 8))
    spec = sharding.logical_to_mesh(P("embed", "kv_heads", "head_dim"), (32, 2, 8), mesh)
    assert spec == P("fsdp", None, None)  # fsdp has size 1 here; 2 kv heads can't split 8 ways


def test_a_mesh_smaller_than_the_host_takes_its_first_devices():
    mesh = mesh_of((1, 2, 1))
    assert mesh.devices.shape == (1, 2, 1)
    assert list(mesh.devices.flat) == jax.devices()[:2]


def test_bad_mesh_shapes_fail_clearly():
    with pytest.raises(ValueError, match="needs 12 devices"):
        mesh_of((3, 4, 1))
    with pytest.raises(ValueError, match="at most one"):
        mesh_of((-1, -1, 1))


def test_batch_not_divisible_by_data_axes_is_refused():
    with pytest.raises(ValueError, match=r"batch\['tokens'\]"):
        sharding.shard_batch({"tokens": np.zeros((6, 4), np.int32)}, mesh_of((8, 1, 1)))


def test_batch_is_split_over_data_and_fsdp():
    mesh = mesh_of((2, 4, 1))
    batch = sharding.shard_batch({"tokens": np.arange(16).reshape(8, 2)}, mesh)
    assert batch["tokens"].sharding.spec == P(("data", "fsdp"), None)
    assert batch["tokens"].addressable_shards[0].data.shape == (1, 2)


@pytest.mark.parametrize(
    "preset, mesh_shape, fraction",
    [
        ("gpt2_small", (1, 8, 1), 1 / 8),
        ("gpt2_small", (1, 4, 2), 1 / 8),
        ("smollm2_135m", (1, 8, 1), 1 / 8),
        # 9 query / 3 kv heads do not split over tensor = 2: attention stays whole on that axis.
        ("smollm2_135m", (1, 4, 2), 0.15),
        ("1b", (1, 8, 1), 1 / 8),
        ("1b", (1, 4, 2), 1 / 8),
        ("1b", (1, 2, 4), 1 / 8),
    ],
)
def test_large_presets_split_their_params_over_fsdp_and_tensor(preset, mesh_shape, fraction):
    """The GPU/TPU model presets (alignax/models/presets.py) on FSDP x tensor meshes of 8
    devices: each device holds about 1/8 of the params (norm scales and indivisible dimensions
    replicated), from the shapes alone (nothing is allocated)."""
    import math

    from alignax.models import build_model
    from alignax.models.presets import model_config

    model = build_model(model_config(preset))
    mesh = mesh_of(mesh_shape)
    total = per_device = 0
    for spec, leaf in zip(
        jax.tree.leaves(sharding.param_shardings(model, mesh)),
        jax.tree.leaves(model.abstract_params),
        strict=True,
    ):
        axes = [a for entry in spec.spec if entry for a in np.atleast_1d(entry)]
        total += leaf.size
        per_device += leaf.size / math.prod(mesh.shape[a] for a in axes)
    assert per_device / total <= fraction * 1.03


def test_batch_split_keeps_activations_on_the_batch_axes_only_when_traced_for_a_mesh():
    mesh = mesh_of((2, 4, 1), jax.devices())
    x = np.zeros((16, 3), np.float32)

    replicated = jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(mesh))

    def spec_of(fn):
        return jax.jit(fn).lower(replicated).compile().output_shardings.spec

    def on_mesh(fn):
        def traced(x):
            with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
                return fn(x)

        return traced

    assert spec_of(on_mesh(lambda x: sharding.batch_split(x + 1)))[0] == ("data", "fsdp")
    assert spec_of(lambda x: sharding.batch_split(x + 1)) == P()
    # Off a mesh, or with rows that do not divide over data x fsdp, nothing is constrained.
    assert sharding.batch_split(x) is x
    odd = np.zeros((6, 3), np.float32)
    assert on_mesh(sharding.batch_split)(odd) is odd
