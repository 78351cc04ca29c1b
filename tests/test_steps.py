"""Train-step builder: no recompilation, gradient accumulation, LM loss by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alignax import logprobs, objectives, optim, sharding, steps
from alignax.state import TrainState
from tests.helpers import mesh_of, pad_rows, tiny_model


def _setup(grad_accum_steps=1, trace_counter=None):
    mesh = mesh_of((1, 1, 1), jax.devices()[:1])
    model = tiny_model()
    params = sharding.init_params(model, jax.random.key(0), mesh)
    tx = optax.sgd(0.1)
    state = TrainState.create(params, tx, mesh)
    loss_fn = objectives.lm_loss_fn(model)
    if trace_counter is not None:

        def counted(*args):
            trace_counter.append(1)
            return loss_fn(*args)

    step = steps.make_train_step(
        counted if trace_counter is not None else loss_fn, tx, grad_accum_steps=grad_accum_steps
    )
    tokens, mask = pad_rows([[3, 4, 5, 6], [7, 8, 9, 10], [3, 5, 7, 9], [4, 6, 8, 10]], 4)
    batch = {
        "tokens": np.asarray(tokens),
        "input_mask": np.asarray(mask),
        "loss_mask": np.asarray(mask),
    }
    return model, state, steps.jit_step(step, state, batch, mesh), batch


def test_second_call_does_not_retrace_or_recompile():
    # The session's persistent cache could serve the first call without a backend compile.
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        _check_second_call_does_not_retrace_or_recompile()
    finally:
        jax.config.update("jax_enable_compilation_cache", True)


def _check_second_call_does_not_retrace_or_recompile():
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *_, **__: (
            compiles.append(name) if name.endswith("backend_compile_duration") else None
        )
    )
    traces = []
    _, state, step, batch = _setup(trace_counter=traces)
    state, _ = step(state, batch, jax.random.key(0))
    compiled_after_first = len(compiles)
    state, _ = step(state, batch, jax.random.key(1))
    assert len(traces) == 1
    assert compiled_after_first >= 1 and len(compiles) == compiled_after_first


def test_gradient_accumulation_equals_the_full_batch_step():
    """Equal token counts per micro-batch, so the mean of micro-batch means is the batch mean."""
    _, state, step_full, batch = _setup()
    _, state2, step_accum, _ = _setup(grad_accum_steps=2)
    full, m_full = step_full(state, batch, jax.random.key(0))
    accum, m_accum = step_accum(state2, batch, jax.random.key(0))
    assert float(m_accum["loss"]) == pytest.approx(float(m_full["loss"]), rel=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), accum.params, full.params
    )


def test_lm_loss_is_the_token_mean_nll_over_the_loss_mask():
    model, state, _, batch = _setup()
    batch["loss_mask"] = batch["loss_mask"] * np.array([[0, 1, 1, 1]])
    loss, metrics = objectives.lm_loss_fn(model)(state.params, state, batch, jax.random.key(0))
    logits = model.apply(state.params, batch["tokens"], batch["input_mask"])["logits"]
    nll = -logprobs.token_logps(logits, jnp.asarray(batch["tokens"]))[:, 1:]
    assert float(loss) == pytest.approx(float(nll.mean()), rel=1e-6)
    assert float(metrics["tokens"]) == 12


def test_stacked_ensemble_trains_each_member_as_its_own_run():
    """Members stacked on axis 0 with the summed loss and per-member clipping end exactly where
    separate runs end: gradients do not mix between members."""
    from ml_collections import ConfigDict

    config = ConfigDict({"optimizer": optim.default_optimizer_config(), "train": {"steps": 10}})
    config.optimizer.update(grad_clip=1e-3, warmup_steps=0, schedule="constant")
    mesh = mesh_of((1, 1, 1), jax.devices()[:1])
    model = tiny_model()
    _, _, _, batch = _setup()
    members = [sharding.init_params(model, jax.random.key(i), mesh) for i in (1, 2)]

    def train(params, loss_fn, tx):
        state = TrainState.create(params, tx, mesh)
        step = jax.jit(steps.make_train_step(loss_fn, tx))
        for i in range(3):
            state, _ = step(state, batch, jax.random.key(i))
        return state.params

    separate = [
        train(p, objectives.lm_loss_fn(model), optim.make_optimizer(config)) for p in members
    ]
    stacked = train(
        jax.tree.map(lambda *xs: jnp.stack(xs), *members),
        objectives.ensemble_loss_fn(objectives.lm_loss_fn(model)),
        optim.make_optimizer(config, stacked_members=True),
    )
    for i, alone in enumerate(separate):
        jax.tree.map(
            lambda a, b, i=i: np.testing.assert_allclose(a[i], b, atol=1e-6), stacked, alone
        )
