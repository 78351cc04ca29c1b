"""Objectives glue models to losses: reference handling, option ordering, name errors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from alignax import objectives
from alignax.losses.registry import default_hyperparameters
from alignax.state import TrainState
from tests.helpers import mesh_of, pad_rows, tiny_model


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
    mesh = mesh_of((1, 1, 1), jax.devices()[:1])
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


def _loss_config(name, **hp):
    return ml_collections.ConfigDict(
        {"name": name, "hyperparameters": default_hyperparameters(name, **hp)}
    )


def test_reference_free_losses_keep_no_reference_and_run_no_reference_forward():
    """SimPO / ORPO / CPO: the state slots hold no reference copy, and the loss runs with
    state.ref_params = None (a reference forward would fail) and equals the primitive applied to
    the policy's own log-probs."""
    from alignax.losses import simpo_loss

    model = tiny_model()
    params = model.init(jax.random.key(0))
    for name in ("simpo", "orpo", "cpo"):
        slots = objectives.preference_state_slots(_loss_config(name, beta=1.0), params)
        assert "ref_params" not in slots
    assert "ref_params" in objectives.preference_state_slots(_loss_config("dpo", beta=0.1), params)
    state = TrainState(step=0, params=params, opt_state=(), ref_params=None)
    batch = _pairs()
    loss_fn = objectives.preference_loss_fn(model, _loss_config("simpo", beta=2.0))
    loss, metrics = loss_fn(params, state, batch, None)
    sums, counts = objectives.option_logps(model, params, batch)
    expected, _ = simpo_loss(
        sums[:, 0],
        sums[:, 1],
        chosen_lengths=counts[:, 0],
        rejected_lengths=counts[:, 1],
        beta=2.0,
    )
    assert float(loss) == pytest.approx(float(expected.mean()), rel=1e-6)
    assert "kl/chosen" not in metrics


def test_public_sums_by_hand():
    """LD-DPO's public length is min(n_c, n_r) scored tokens, counted from the first scored one."""
    tokens = jnp.array([[[1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 20.0, 30.0, 40.0, 50.0]]])
    mask = jnp.array([[[0, 1, 1, 1, 0], [0, 0, 1, 1, 0]]])  # n_c = 3, n_r = 2 -> l_p = 2
    np.testing.assert_allclose(objectives._public_sums(tokens * mask, mask), [[2 + 3, 30 + 40]])


def test_wpo_inputs_match_a_numpy_formula():
    """'wpo' = per-token mean over the response of log p(y_t) - log sum_v p(v)^2, from logits
    (numpy float64)."""
    model = tiny_model()
    params = model.init(jax.random.key(0))
    batch = _pairs()
    out = objectives._option_outputs(model, params, batch, wpo=True)
    logits = np.asarray(
        model.apply(
            params, batch["tokens"].reshape(4, 8), batch["input_mask"].reshape(4, 8), heads=("lm",)
        )["logits"],
        np.float64,
    )
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    tokens, mask = batch["tokens"].reshape(4, 8), batch["loss_mask"].reshape(4, 8)
    expected = []
    for b in range(4):
        terms = [
            logp[b, t - 1, tokens[b, t]] - np.log(np.exp(2 * logp[b, t - 1]).sum())
            for t in range(1, 8)
            if mask[b, t]
        ]
        expected.append(np.mean(terms))
    np.testing.assert_allclose(out["wpo"].reshape(4), expected, rtol=1e-4)


def test_bco_reward_shift_is_the_running_mean_of_batch_rewards():
    """bco_pair reads delta from state.aux: with a running mean 0.2 over 3 batches, this batch's
    delta is (3 * 0.2 + m) / 4 where m is the batch-mean implicit reward (TRL's running mean
    includes the current batch); the step wrapper stores it and counts the batch."""
    model = tiny_model()
    config = _loss_config("bco_pair", beta=0.5)
    params = model.init(jax.random.key(0))
    slots = objectives.preference_state_slots(config, params)
    np.testing.assert_array_equal(slots["aux"]["reward_shift"]["count"], 0.0)
    aux = {"reward_shift": {"mean": jnp.float32(0.2), "count": jnp.float32(3.0)}}
    state = TrainState(
        step=0, params=params, opt_state=(), ref_params=model.init(jax.random.key(1)), aux=aux
    )
    _, metrics = objectives.preference_loss_fn(model, config)(params, state, _pairs(), None)
    m = float(metrics["rewards/mean"])
    assert abs(m) > 1e-4  # policy and reference differ
    assert float(metrics["reward_shift"]) == pytest.approx((3 * 0.2 + m) / 4, rel=1e-5)

    def fake_step(state, batch, rng):  # stands for steps.make_train_step(loss_fn, tx)
        return state.replace(step=state.step + 1), {"reward_shift": jnp.float32(0.35)}

    new_state, _ = objectives.preference_train_step(fake_step, config)(state, None, None)
    assert float(new_state.aux["reward_shift"]["mean"]) == pytest.approx(0.35)
    assert float(new_state.aux["reward_shift"]["count"]) == 4.0
    dpo_step = objectives.preference_train_step(fake_step, _loss_config("dpo", beta=0.1))
    assert dpo_step is fake_step


def _scored_pairs(side):
    """Pairs with prompts of different lengths, padded on `side`, the response scored."""
    rows = [
        ([1, 5, 6], [7, 9, 2]),
        ([1, 5, 6], [9, 2]),
        ([1, 8, 10, 11, 4], [12, 2]),
        ([1, 8, 10, 11, 4], [3, 3, 13, 2]),
    ]
    tokens, mask = pad_rows([p + r for p, r in rows], 12, side=side)
    tokens, mask = np.asarray(tokens), np.asarray(mask)
    loss_mask = np.zeros_like(mask)
    for i, (prompt, response) in enumerate(rows):
        start = int(np.argmax(mask[i])) + len(prompt)
        loss_mask[i, start : start + len(response)] = 1
    reshape = lambda x: x.reshape(2, 2, 12)
    return {
        "tokens": reshape(tokens),
        "input_mask": reshape(mask),
        "loss_mask": reshape(loss_mask),
        "ranks": np.array([[0, 1], [0, 1]]),
    }


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("name", ["dpo", "ld_dpo", "wpo"])
def test_lm_head_at_scored_positions_only_gives_the_same_loss_and_gradients(name, side):
    """The LM head read only where tokens are scored (the width `scored_width` finds over the
    data) changes neither the loss, its metrics nor the gradients, for losses that read the
    per-token log-probs too (LD-DPO's public length, WPO's normaliser)."""
    from alignax import logprobs

    model = tiny_model()
    state = _state(model)
    config = ml_collections.ConfigDict(
        {"name": name, "hyperparameters": default_hyperparameters(name, beta=0.1)}
    )
    batch = _scored_pairs(side)
    width = logprobs.scored_width(batch["loss_mask"], multiple=1)
    assert width == 4  # the longest response, its EOS included
    outputs = {}
    for scored_width in (None, width):
        loss_fn = objectives.preference_loss_fn(model, config, scored_width=scored_width)
        grad_fn = jax.value_and_grad(lambda p, f=loss_fn: f(p, state, batch, None), has_aux=True)
        outputs[scored_width] = grad_fn(state.params)
    (full_loss, full_metrics), full_grads = outputs[None]
    (loss, metrics), grads = outputs[width]
    np.testing.assert_allclose(loss, full_loss, rtol=1e-6)
    for key in full_metrics:
        np.testing.assert_allclose(metrics[key], full_metrics[key], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(full_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(full_grads))


@pytest.mark.parametrize("side", ["left", "right"])
def test_lm_loss_at_scored_positions_only_is_the_same_and_refuses_a_narrow_window(side):
    from alignax import logprobs

    model = tiny_model()
    params = model.init(jax.random.key(0))
    pairs = _scored_pairs(side)
    batch = {k: pairs[k].reshape(4, 12) for k in ("tokens", "input_mask", "loss_mask")}
    width = logprobs.scored_width(batch["loss_mask"], multiple=1)

    def loss_and_grads(scored_width):
        loss_fn = objectives.lm_loss_fn(model, scored_width=scored_width)
        return jax.value_and_grad(lambda p: loss_fn(p, None, batch, None), has_aux=True)(params)

    (full, full_metrics), full_grads = loss_and_grads(None)
    (loss, metrics), grads = loss_and_grads(width)
    np.testing.assert_allclose(loss, full, rtol=1e-6)
    np.testing.assert_allclose(metrics["entropy"], full_metrics["entropy"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(full_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    # A window narrower than a row's scored span would drop tokens: the loss is NaN instead.
    (narrow, _), _ = loss_and_grads(width - 1)
    assert np.isnan(narrow)
