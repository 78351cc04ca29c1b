"""Golden one-step tests: one update of every training algorithm, from a fixed init on a fixed
batch, against values stored in tests/golden_one_step.json (the loss, the gradient norm and two
projections of the parameter change).

The closed-form tests check each loss's formula; these catch what those cannot see: a change in
how a step assembles its batch, masks, reference, optimizer update or rollout. They fail on any
change to the numbers beyond float32 reduction-order noise. When a change is meant to alter the
numbers (a new initialisation, a different reduction), regenerate and say so in the commit:

    ALIGNAX_WRITE_GOLDEN=1 python -m pytest -n 0 tests/test_golden.py
"""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alignax import objectives, rl, sharding, steps
from alignax.state import TrainState
from configs import dpo as dpo_config
from configs import kto as kto_config
from configs import reward_model as reward_model_config
from tests.helpers import EOS, mesh_of, pad_rows, tiny_model, toy_grpo, toy_ppo, toy_prompts

GOLDEN = Path(__file__).with_name("golden_one_step.json")
WRITE = os.environ.get("ALIGNAX_WRITE_GOLDEN") == "1"
# Reduction order may change the last float32 bits (a new XLA fusion); a real change to a step
# moves these numbers by far more.
RTOL, ATOL = 2e-4, 1e-7


def _sequences(n: int, length: int, seed: int):
    """Right-padded random rows with the first 3 tokens as the prompt (not scored)."""
    rng = np.random.default_rng(seed)
    rows = [list(rng.integers(3, 32, size=rng.integers(6, length + 1))) for _ in range(n)]
    tokens, input_mask = (np.asarray(x) for x in pad_rows(rows, length))
    loss_mask = input_mask.copy()
    loss_mask[:, :3] = 0
    return {"tokens": tokens, "input_mask": input_mask, "loss_mask": loss_mask}


def _options(n: int, k: int, length: int, seed: int):
    flat = _sequences(n * k, length, seed)
    return {key: value.reshape(n, k, length) for key, value in flat.items()}


def _offline_step(loss_fn, params, batch, **slots):
    mesh = mesh_of((1, 1, 1), jax.devices()[:1])
    tx = optax.sgd(0.1)
    state = TrainState.create(params, tx, mesh, **slots)
    before = jax.device_get(state.params)
    step = jax.jit(steps.make_train_step(loss_fn, tx))
    state, metrics = step(state, jax.tree.map(jnp.asarray, batch), jax.random.key(0))
    return before, jax.device_get(state.params), jax.device_get(metrics)


def _sft():
    model = tiny_model()
    params = model.init(jax.random.key(0))
    return _offline_step(objectives.lm_loss_fn(model), params, _sequences(4, 12, seed=0))


def _reward_model():
    model = tiny_model(heads=("reward",))
    batch = {**_options(4, 2, 12, seed=1), "ranks": np.array([[0, 1], [1, 0], [0, 1], [1, 0]])}
    loss_fn = objectives.reward_model_loss_fn(model, reward_model_config.get_config().loss)
    return _offline_step(loss_fn, model.init(jax.random.key(0)), batch)


def _dpo():
    model = tiny_model()
    loss_config = dpo_config.get_config("dpo").loss
    # A reference other than the policy, so that the first step's loss is not log 2.
    ref_params = model.init(jax.random.key(1))
    return _offline_step(
        objectives.preference_loss_fn(model, loss_config),
        model.init(jax.random.key(0)),
        _options(4, 2, 12, seed=2),
        ref_params=ref_params,
    )


def _kto():
    model = tiny_model()
    loss_config = kto_config.get_config("kto").loss
    batch = _sequences(4, 12, seed=3)
    mismatched = _sequences(4, 12, seed=4)
    batch.update({f"kl_{key}": value for key, value in mismatched.items()})
    batch["label"] = np.array([1, 0, 1, 1], np.int32)
    return _offline_step(
        objectives.unpaired_loss_fn(model, loss_config),
        model.init(jax.random.key(0)),
        batch,
        ref_params=model.init(jax.random.key(1)),
    )


def _low_token_share(state, tokens, input_mask, loss_mask):
    """A dense reward for the online steps: the share of response tokens below 16 (the tiny
    policy's samples hit any single token too rarely for the first step to see a signal)."""
    del state, input_mask
    return jnp.sum((tokens < 16) * loss_mask, -1) / jnp.maximum(jnp.sum(loss_mask, -1), 1)


def _online(build, **config_overrides):
    mesh = mesh_of((1, 1, 1), jax.devices()[:1])
    state, step_fn = build(mesh, score_fn=_low_token_share, **config_overrides)
    before = jax.device_get(state.params)
    batch = sharding.shard_batch(toy_prompts(8), mesh)
    state, metrics = steps.jit_step(step_fn, state, batch, mesh)(state, batch, jax.random.key(0))
    return before, jax.device_get(state.params), jax.device_get(metrics)


def _paired(mesh, score_fn, algorithm):
    """XPO or Nash-MD: a policy response against a reference (XPO) or mixture (Nash-MD) one."""
    policy = tiny_model()
    params = sharding.init_params(policy, jax.random.key(0), mesh)
    tx = optax.sgd(0.1)
    state = TrainState.create(params, tx, mesh, ref_params=params)
    make_step, config = {
        "xpo": (rl.make_xpo_step, rl.XPOConfig(beta=0.5, alpha=0.01)),
        "nash_md": (rl.make_nash_md_step, rl.NashMDConfig(beta=0.1, mixture_coef=0.5)),
    }[algorithm]
    step = make_step(
        policy=policy,
        score_fn=score_fn,
        tx=tx,
        config=config,
        rollout_config=rl.RolloutConfig(max_new_tokens=6),
        eos_id=EOS,
    )
    return state, step


CASES = {
    "sft": (_sft, ("loss", "grad_norm")),
    "reward_model": (_reward_model, ("loss", "grad_norm")),
    "dpo": (_dpo, ("loss", "grad_norm", "kl/chosen")),
    "kto": (_kto, ("loss", "grad_norm")),
    "ppo": (lambda: _online(toy_ppo), ("loss", "grad_norm", "proxy/mean", "kl/sequence")),
    "grpo": (lambda: _online(toy_grpo), ("loss", "grad_norm", "proxy/mean")),
    # Sequence-level REINFORCE with a leave-one-out baseline and the KL in the reward.
    "rloo": (lambda: _online(toy_grpo, baseline="rloo"), ("loss", "grad_norm", "proxy/mean")),
    "xpo": (
        lambda: _online(_paired, algorithm="xpo"),
        ("loss", "grad_norm", "proxy/mean", "xpo/policy_win_rate"),
    ),
    "nash_md": (
        lambda: _online(_paired, algorithm="nash_md"),
        ("loss", "grad_norm", "proxy/mean", "nash_md/preference"),
    ),
}


def update_projections(before, after) -> dict[str, float]:
    """Two fixed projections of the parameter change: its squared norm, and its inner product
    with a deterministic cosine pattern over each leaf (sensitive to where the change lands)."""
    deltas = [
        np.asarray(b, np.float64).ravel() - np.asarray(a, np.float64).ravel()
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    ]
    return {
        "update/squared_norm": float(sum(np.sum(d * d) for d in deltas)),
        "update/projection": float(sum(np.sum(d * np.cos(np.arange(d.size))) for d in deltas)),
    }


def _measure(name):
    build, keys = CASES[name]
    before, after, metrics = build()
    values = {key: float(metrics[key]) for key in keys}
    return {**values, **update_projections(before, after)}


def test_update_projections_by_hand():
    before = {"a": np.zeros(3, np.float32), "b": np.ones((1,), np.float32)}
    after = {"a": np.array([1.0, 2.0, 0.0], np.float32), "b": np.array([3.0], np.float32)}
    got = update_projections(before, after)
    assert got["update/squared_norm"] == 1 + 4 + 4
    assert got["update/projection"] == pytest.approx(1 * 1 + 2 * np.cos(1) + 2 * 1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_step_matches_golden(name):
    measured = _measure(name)
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if WRITE:
        stored[name] = measured
        GOLDEN.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        return
    assert name in stored, f"{GOLDEN} has no {name!r}: regenerate (see the module docstring)"
    assert set(measured) == set(stored[name])
    for key, value in stored[name].items():
        np.testing.assert_allclose(measured[key], value, rtol=RTOL, atol=ATOL, err_msg=key)
    # The step changed the params (a zero update would make the projections vacuous).
    assert measured["update/squared_norm"] > 1e-8
