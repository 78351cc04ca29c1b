"""Objectives glue models to losses: reference handling, option ordering, name errors."""

import jax
import ml_collections
import numpy as np
import pytest

from alignax import objectives
from alignax.losses.registry import default_hyperparameters
from alignax.state import TrainState
from tests.helpers import pad_rows, tiny_model
from tests.test_sharding import _mesh


def _pairs():
    rows = [[1, 5, 6, 7, 2], [1, 5, 9, 2], [1, 8, 10, 11, 12, 2], [1, 8, 3, 2]]
    tokens, mask = pad_rows(rows, 8)
    loss_mask = np.asarray(mask) * (np.arange(8) >= 2)
    reshape = lambda x: np.asarray(x).reshape(2, 2, 8)
    return {
        "tokens": reshape(tokens),
        "input_mask": reshape(mask),
        "loss_mask": reshape(loss_mask),
        "ranks": np.array([[0, 1], [0, 1]]),
    }


def _state(model, seed_policy=0, seed_ref=1):
    mesh = _mesh((1, 1, 1), jax.devices()[:1])
    import optax

    return TrainState.create(
        model.init(jax.random.key(seed_policy)),
        optax.sgd(0.1),
        mesh,
        ref_params=model.init(jax.random.key(seed_ref)),
    )


def test_precomputed_reference_logps_give_the_same_loss():
    model = tiny_model()
    state = _state(model)
    config = ml_collections.ConfigDict(
        {"name": "dpo", "hyperparameters": default_hyperparameters("dpo", beta=0.1)}
    )
    loss_fn = objectives.preference_loss_fn(model, config)
    batch = _pairs()
    in_step, metrics = loss_fn(state.params, state, batch, None)
    ref_logps, _ = objectives.option_logps(model, state.ref_params, batch)
    cached, _ = loss_fn(state.params, state, {**batch, "ref_logps": ref_logps}, None)
    assert float(cached) == pytest.approx(float(in_step), rel=1e-6)
    assert float(metrics["kl/chosen"]) != 0.0  # policy and reference really differ


def test_bradley_terry_reads_the_chosen_option_from_the_ranks():
    """Swapping the options and their ranks leaves the reward-model loss unchanged."""
    model = tiny_model(heads=("reward",))
    state = _state(model)
    config = ml_collections.ConfigDict(
        {"name": "bradley_terry", "center_coefficient": 0.0, "label_smoothing": 0.0}
    )
    loss_fn = objectives.reward_model_loss_fn(model, config)
    batch = _pairs()
    swapped = {k: v[:, ::-1] for k, v in batch.items()}
    a, _ = loss_fn(state.params, state, batch, None)
    b, _ = loss_fn(state.params, state, swapped, None)
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_unknown_reward_loss_is_named():
    config = ml_collections.ConfigDict(
        {"name": "hinge", "center_coefficient": 0.0, "label_smoothing": 0.0}
    )
    with pytest.raises(ValueError, match=r"loss\.name='hinge'"):
        objectives.reward_model_loss_fn(tiny_model(heads=("reward",)), config)


def test_preference_loss_rejects_a_hyperparameter_the_loss_does_not_take():
    config = ml_collections.ConfigDict(
        {"name": "ipo", "hyperparameters": {"beta": 0.1, "gamma": 0.5}}
    )
    with pytest.raises(ValueError, match="gamma"):
        objectives.preference_loss_fn(tiny_model(), config)
