"""The shared host loop: kill-and-resume ends where an uninterrupted run ends; NaN stops it."""

import jax
import ml_collections
import numpy as np
import optax
import pytest

from alignax import objectives, sharding, steps, training
from alignax.metrics import NonFiniteMetricError, read_metrics
from alignax.state import TrainState
from alignax.training import default_train_config, train_loop
from tests.helpers import mesh_of, pad_rows, tiny_model


class Batches:
    """Minimal resumable iterator: batch i is a function of (seed, i)."""

    def __init__(self, fail_at=None):
        self.index = 0
        self.fail_at = fail_at

    def __next__(self):
        if self.index == self.fail_at:
            raise KeyboardInterrupt("simulated kill")
        rng = np.random.default_rng(self.index)
        self.index += 1
        rows = [list(rng.integers(3, 32, size=6)) for _ in range(4)]
        tokens, mask = pad_rows(rows, 6)
        return {
            "tokens": np.asarray(tokens),
            "input_mask": np.asarray(mask),
            "loss_mask": np.asarray(mask),
        }

    def state(self):
        return {"index": self.index}

    def restore(self, state):
        self.index = state["index"]


def _config(steps_=6, **train):
    config = ml_collections.ConfigDict({"train": default_train_config()})
    config.train.update(steps=steps_, log_every=1, eval_every=3, checkpoint_every=2, **train)
    return config


def _run(workdir, batches, learning_rate=1e-2, wrap_step=lambda step: step, **train):
    mesh = mesh_of((1, 1, 1), jax.devices()[:1])
    model = tiny_model()
    tx = optax.adam(learning_rate)
    state = TrainState.create(sharding.init_params(model, jax.random.key(0), mesh), tx, mesh)
    step = steps.jit_step(
        steps.make_train_step(objectives.lm_loss_fn(model), tx), state, next(Batches()), mesh
    )
    return train_loop(
        state=state,
        step_fn=wrap_step(step),
        batches=batches,
        mesh=mesh,
        workdir=workdir,
        config=_config(**train),
        rng=jax.random.key(0),
        name="test",
        eval_fn=lambda s: {"step": float(s.step)},
    )


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    full = _run(tmp_path / "full", Batches())
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "killed", Batches(fail_at=5))  # dies during step 6, last save at 4
    resumed = _run(tmp_path / "killed", Batches())
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
        resumed.params,
        full.params,
    )
    logged = [m["step"] for m in read_metrics(tmp_path / "killed") if "loss" in m]
    # Step 5 ran twice (before the kill and after the resume from step 4) but is logged once.
    assert logged == [1, 2, 3, 4, 5, 6]
    evals = [m for m in read_metrics(tmp_path / "full") if "eval/step" in m]
    assert [m["eval/step"] for m in evals] == [3.0, 6.0]


def test_eval_steps_add_evaluations_to_every_eval_every_th(tmp_path):
    # eval_every 3 over 6 steps evaluates 3 and 6; eval_steps adds 1 and 2 (and 3 once).
    _run(tmp_path, Batches(), eval_steps=(1, 2, 3))
    evals = [m["eval/step"] for m in read_metrics(tmp_path) if "eval/step" in m]
    assert evals == [1.0, 2.0, 3.0, 6.0]


def test_a_log_step_is_fetched_after_the_next_step_is_dispatched(tmp_path, monkeypatch):
    # log every step, evaluate at 3 and 6, save at 2, 4 and 6: the metrics of a step that is
    # neither evaluated nor saved (1, 5) are fetched once the next step is on the device.
    events = []

    def wrap_step(step_fn):
        def step(state, batch, rng):
            events.append(f"dispatch {int(state.step) + 1}")
            return step_fn(state, batch, rng)

        return step

    def to_host(metrics):
        events.append(f"fetch {len([e for e in events if e.startswith('fetch')]) + 1}")
        return training_to_host(metrics)

    training_to_host = training.to_host
    monkeypatch.setattr(training, "to_host", to_host)
    _run(tmp_path, Batches(), wrap_step=wrap_step)
    assert events == [
        "dispatch 1", "dispatch 2", "fetch 1", "fetch 2",
        "dispatch 3", "fetch 3",
        "dispatch 4", "fetch 4",
        "dispatch 5", "dispatch 6", "fetch 5", "fetch 6",
    ]  # fmt: skip


def test_nan_stops_the_run_with_step_and_params(tmp_path):
    # Step 1's loss is computed before the first (NaN) update; the updated params are checked
    # too, so step 1 already stops the run, before anything is saved.
    with pytest.raises(NonFiniteMetricError, match=r"after step 1: NaN/Inf in params/"):
        _run(tmp_path, Batches(), learning_rate=float("nan"))
    assert not list((tmp_path / "checkpoints").glob("[0-9]*"))
