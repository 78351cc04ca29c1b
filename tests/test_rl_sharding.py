"""PPO and GRPO iterations on the three 8-device meshes give the single-device result, and a
second call neither retraces nor recompiles."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alignax import rl, sharding, steps
from alignax.models import transplant_backbone
from alignax.state import TrainState
from tests.helpers import tiny_model
from tests.test_rl import EOS, _prompts, toy_score
from tests.test_sharding import MESHES, _mesh

# Heads and widths that the tensor axis (2) divides.
MODEL = dict(d_model=32, num_heads=4, num_kv_heads=2, mlp_dim=64)


def _ppo(mesh, score_fn=toy_score):
    policy = tiny_model(**MODEL)
    value_model = tiny_model(heads=("value",), **MODEL)
    params = sharding.init_params(policy, jax.random.key(0), mesh)
    value = transplant_backbone(params, sharding.init_params(value_model, jax.random.key(1), mesh))
    # The critic starts from the policy's backbone in buffers of its own (the step donates both).
    value = jax.tree.map(lambda x: jnp.array(x, copy=True), value)
    config = rl.PPOConfig(missing_eos_penalty=0.0, kl_control="fixed")
    controller = rl.kl_controller_from_config(config)
    # SGD: Adam's first step is ~lr * sign(grad), which would blow float32 rounding up.
    tx = optax.sgd(0.1)
    state = TrainState.create(
        {"policy": params, "value": value},
        tx,
        mesh,
        ref_params=params,
        aux={"kl": controller.init()},
    )
    step = rl.make_ppo_step(
        policy=policy,
        value_model=value_model,
        score_fn=score_fn,
        tx=tx,
        kl_controller=controller,
        config=config,
        rollout_config=rl.RolloutConfig(max_new_tokens=6),
        eos_id=EOS,
    )
    return state, step


def _grpo(mesh, score_fn=toy_score, **config_overrides):
    policy = tiny_model(**MODEL)
    params = sharding.init_params(policy, jax.random.key(0), mesh)
    tx = optax.sgd(0.1)
    state = TrainState.create(params, tx, mesh, ref_params=params)
    config = rl.GRPOConfig(num_minibatches=1, **config_overrides)
    step = rl.make_grpo_step(
        policy=policy,
        score_fn=score_fn,
        tx=tx,
        config=config,
        rollout_config=rl.RolloutConfig(max_new_tokens=6, group_size=2),
        eos_id=EOS,
    )
    return state, step


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

    batch = sharding.shard_batch(_prompts(8), mesh)
    step = steps.jit_step(counted, state, batch, mesh)
    state, _ = step(state, batch, jax.random.key(0))
    compiled = len(compiles)
    state, metrics = step(state, batch, jax.random.key(1))
    # A retrace counts too: the persistent compilation cache could serve it without a compile.
    recompiles = len(compiles) - compiled + len(traces) - 1
    return jax.device_get(state.params), jax.device_get(metrics), recompiles


@functools.lru_cache
def _single_device(algo):
    return _two_iterations(_ppo if algo == "ppo" else _grpo, _mesh((1, 1, 1), jax.devices()[:1]))


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
@pytest.mark.parametrize("shape", MESHES)
def test_rl_iteration_matches_single_device_and_compiles_once(algo, shape):
    params_1, metrics_1, _ = _single_device(algo)
    params_n, metrics_n, recompiles = _two_iterations(
        _ppo if algo == "ppo" else _grpo, _mesh(shape)
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
