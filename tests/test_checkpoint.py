"""Checkpoints: round trip, bit-for-bit resume, restore onto another mesh, mismatch errors."""

import jax
import numpy as np
import optax
import pytest

from alignax import objectives, sharding, steps
from alignax.checkpoint import Checkpointer, CheckpointMismatchError
from alignax.state import TrainState
from tests.helpers import mesh_of, pad_rows, tiny_model


def _batches(n):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        rows = [list(rng.integers(3, 32, size=6)) for _ in range(8)]
        tokens, mask = pad_rows(rows, 6)
        out.append(
            {
                "tokens": np.asarray(tokens),
                "input_mask": np.asarray(mask),
                "loss_mask": np.asarray(mask),
            }
        )
    return out


def _fresh(mesh, **model_overrides):
    model = tiny_model(**model_overrides)
    tx = optax.adam(1e-2)
    state = TrainState.create(
        sharding.init_params(model, jax.random.key(0), mesh),
        tx,
        mesh,
        aux={"kl_coef": np.float32(0.1)},
    )
    return model, tx, state


def _run(state, model, tx, mesh, batches):
    step = steps.jit_step(
        steps.make_train_step(objectives.lm_loss_fn(model), tx), state, batches[0], mesh
    )
    for batch in batches:
        state, _ = step(state, sharding.shard_batch(batch, mesh), jax.random.key(7))
    return state


def _assert_trees_equal(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_round_trip_restores_state_and_data_position(tmp_path):
    mesh = mesh_of((1, 1, 1), jax.devices()[:1])
    _, _, state = _fresh(mesh)
    ckpt = Checkpointer(tmp_path, save_every=5)
    assert ckpt.restore_latest(state) is None
    assert not ckpt.save(3, state, {"index": 3})  # not a multiple of save_every
    assert ckpt.save(5, state, {"epoch": 1, "index": 17})
    restored, data_state = ckpt.restore_latest(state)
    _assert_trees_equal(restored, state)
    assert data_state == {"epoch": 1, "index": 17}


def test_resume_continues_bit_for_bit(tmp_path):
    """3 steps, save, restore in a new Checkpointer, 3 more == 6 uninterrupted steps."""
    mesh = mesh_of((2, 2, 2))
    batches = _batches(6)
    model, tx, state = _fresh(mesh)
    uninterrupted = _run(state, model, tx, mesh, batches)

    model, tx, state = _fresh(mesh)
    state = _run(state, model, tx, mesh, batches[:3])
    Checkpointer(tmp_path, save_every=3).save(3, state)
    _, _, like = _fresh(mesh)
    restored, _ = Checkpointer(tmp_path, save_every=3).restore_latest(like)
    assert int(restored.step) == 3
    resumed = _run(restored, model, tx, mesh, batches[3:])
    _assert_trees_equal(resumed.params, uninterrupted.params)
    _assert_trees_equal(resumed.opt_state, uninterrupted.opt_state)


def test_restore_onto_a_different_mesh(tmp_path):
    mesh_a, mesh_b = mesh_of((8, 1, 1)), mesh_of((2, 2, 2))
    _, _, state = _fresh(mesh_a)
    Checkpointer(tmp_path, save_every=1).save(1, state)
    _, _, like = _fresh(mesh_b)
    restored, _ = Checkpointer(tmp_path, save_every=1).restore_latest(like)
    _assert_trees_equal(restored.params, state.params)
    assert restored.params["embed"].sharding == like.params["embed"].sharding
    assert restored.params["embed"].sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")


def test_checkpoint_from_another_config_names_the_key_and_shapes(tmp_path):
    mesh = mesh_of((1, 1, 1), jax.devices()[:1])
    _, _, state = _fresh(mesh)
    Checkpointer(tmp_path, save_every=1).save(1, state)
    _, _, other = _fresh(mesh, mlp_dim=128)
    with pytest.raises(
        CheckpointMismatchError, match=r"params/blocks/mlp/down.*\(2, 64, 32\).*\(2, 128, 32\)"
    ):
        Checkpointer(tmp_path, save_every=1).restore_latest(other)


def test_keeps_only_the_last_k(tmp_path):
    mesh = mesh_of((1, 1, 1), jax.devices()[:1])
    _, _, state = _fresh(mesh)
    ckpt = Checkpointer(tmp_path, save_every=1, keep=2)
    for step in (1, 2, 3):
        ckpt.save(step, state)
    assert ckpt.manager.all_steps() == [2, 3]
