"""PPO and GRPO iterations on the three 8-device meshes give the single-device result, and a
second call neither retraces nor recompiles."""

import functools

import jax
import numpy as np
import pytest

from alignax import sharding, steps
from tests.helpers import MESH_SHAPES, mesh_of, toy_grpo, toy_ppo, toy_prompts


def _two_iterations(build, mesh):
    """Params and metrics after two iterations, and the retraces and compiles of the second."""
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *_, **__: (
            compiles.append(name) if name.endswith("backend_compile_duration") else None
        )
    )
    traces = []
    state, step_fn = build(mesh)

    def counted(*args):
        traces.append(1)
        return step_fn(*args)

    batch = sharding.shard_batch(toy_prompts(8), mesh)
    step = steps.jit_step(counted, state, batch, mesh)
    state, _ = step(state, batch, jax.random.key(0))
    compiled = len(compiles)
    state, metrics = step(state, batch, jax.random.key(1))
    # A retrace counts too: the persistent compilation cache could serve it without a compile.
    recompiles = len(compiles) - compiled + len(traces) - 1
    return jax.device_get(state.params), jax.device_get(metrics), recompiles


@functools.lru_cache
def _single_device(algo):
    return _two_iterations(
        toy_ppo if algo == "ppo" else toy_grpo, mesh_of((1, 1, 1), jax.devices()[:1])
    )


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
@pytest.mark.parametrize("shape", MESH_SHAPES)
def test_rl_iteration_matches_single_device_and_compiles_once(algo, shape):
    params_1, metrics_1, _ = _single_device(algo)
    params_n, metrics_n, recompiles = _two_iterations(
        toy_ppo if algo == "ppo" else toy_grpo, mesh_of(shape)
    )
    assert recompiles == 0
    # The same samples (the rollout's reward and length are functions of the tokens alone) ...
    for key in ("proxy/mean", "rollout/response_length"):
        assert metrics_n[key] == metrics_1[key], key
    # ... and the same update, up to float32 reduction order.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4), params_n, params_1
    )
    for key, value in metrics_1.items():
        np.testing.assert_allclose(metrics_n[key], value, atol=1e-5, rtol=1e-4, err_msg=key)
