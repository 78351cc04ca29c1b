"""The length-bias study's annotators, covariate trainer and analysis on cases whose answers are
known, and its checks before it runs (its end-to-end run is the notebook's fixture,
tests/test_notebooks.py)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from alignax.analysis.best_of_n import pick_probabilities
from alignax.analysis.length_bias import (
    annotate,
    gold_beyond_length,
    length_correlation,
    logistic_intercept,
    sigmoid,
    versus_references,
    win_rates,
)
from alignax.analysis.policy_eval import score_pairs
from alignax.analysis.stats import least_squares_slope
from alignax.models import build_model
from alignax.proxies import proxy_optimizer, reward_model_config
from alignax.sweeps import make_member_scorer, make_soft_label_reward_sweep
from configs import length_bias as config_module
from experiments import length_bias
from tests.helpers import preset_config


def test_annotators_of_shared_draws_differ_only_where_their_utilities_do():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=(20000, 2))
    length = rng.normal(size=(20000, 2))
    uniform = rng.random(20000)
    unbiased = annotate(gold, uniform, 0.5)
    biased = annotate(gold + 1.0 * length, uniform, 0.5)
    # Where the length difference raises the first response's utility, no label can drop.
    up = length[:, 0] > length[:, 1]
    assert (biased[up] >= unbiased[up]).all() and (biased[~up] <= unbiased[~up]).all()
    # Bradley-Terry: the share of "first" labels at a utility gap d is sigmoid(d / T).
    near = np.abs(gold[:, 0] - gold[:, 1] - 0.5) < 0.05
    assert abs(unbiased[near].mean() - sigmoid(1.0)) < 0.04


def test_slope_correlation_and_gold_at_matched_length_on_known_cases():
    length = np.tile(np.arange(10.0, 20.0), (3, 1))
    assert least_squares_slope(2.0 * length + 1.0, length) == pytest.approx(2.0)
    assert length_correlation(-3.0 * length, length) == pytest.approx(-1.0)
    # Gold that is a function of length has nothing beyond it; a constant length leaves gold
    # less its mean.
    assert np.allclose(gold_beyond_length(np.sin(length), length), 0.0)
    gold = np.random.default_rng(1).normal(size=(3, 10))
    np.testing.assert_allclose(gold_beyond_length(gold, np.ones((3, 10))), gold - gold.mean())


def test_logistic_regression_recovers_the_probability_at_zero():
    x = np.linspace(-3, 3, 61)
    y = sigmoid(0.7 + 1.5 * x)  # soft labels exactly on the model: the fit is exact
    assert logistic_intercept(y, x, np.ones_like(x)) == pytest.approx(sigmoid(0.7), abs=1e-8)
    # Weights count like repeated rows.
    w = np.where(x > 0, 3.0, 1.0)
    repeated = np.concatenate([x, x[x > 0], x[x > 0]])
    assert logistic_intercept(y, x, w) == pytest.approx(
        logistic_intercept(sigmoid(0.7 + 1.5 * repeated), repeated, np.ones_like(repeated))
    )


def test_win_rates_of_a_random_pick_are_a_half_and_length_control_removes_a_pure_length_judge():
    rng = np.random.default_rng(2)
    prompts, pool = 6, 16
    gold, z = rng.normal(size=(prompts, pool)), rng.normal(size=(prompts, pool))
    references = np.tile(np.arange(pool), (prompts, 1))  # every sample: exact symmetry
    gold_judged = sigmoid(versus_references(gold, references) / 0.5)
    gap = versus_references(z, references)
    judged = sigmoid(versus_references(gold + z, references) / 0.5)
    # n = 1 is a random pool sample: it wins half of its comparisons with the pool, by any judge.
    at_one = win_rates(
        pick_probabilities(rng.normal(size=(prompts, pool)), 1), judged, gold_judged, gap
    )
    assert at_one["raw"] == pytest.approx(0.5) and at_one["gold"] == pytest.approx(0.5)
    # A judge that prefers by length alone, and picks by length: raw wins, but at equal length
    # the judge is indifferent.
    by_length = sigmoid(2.0 * gap)
    picked = win_rates(pick_probabilities(z, 4), by_length, gold_judged, gap)
    assert picked["raw"] > 0.7 and picked["controlled"] == pytest.approx(0.5, abs=1e-6)


@pytest.fixture(scope="module")
def tiny_pairs():
    config = config_module.get_config("runlocal")
    from alignax import labels
    from alignax.tasks import get_task

    task = get_task(config.task_name, config.task)
    pairs = labels.shuffled_generator_pairs(task, 64, seed=0, split="train")
    model = build_model(reward_model_config(config.model, 4), heads=("reward",))
    return pairs, model


def covariate_sweep(model, pairs, steps, learning_rate, covariate=True):
    p = ml_collections.ConfigDict(
        {"learning_rate": learning_rate, "weight_decay": 0.0, "steps": steps}
    )
    return make_soft_label_reward_sweep(
        model,
        proxy_optimizer(p),
        {k: jnp.asarray(pairs[k]) for k in ("tokens", "input_mask")},
        steps=steps,
        batch_size=8,
        center_coefficient=0.01,
        confidence_warmup=0.0,
        with_covariate=covariate,
    )


def test_a_zero_covariate_trains_as_no_covariate_and_a_real_one_is_fitted(tiny_pairs):
    pairs, model = tiny_pairs
    n = len(pairs["tokens"])
    keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
    params = jax.vmap(model.init)(keys)
    x = np.random.default_rng(3).normal(size=n).astype(np.float32)
    target = (x > 0).astype(np.float32)  # the labels follow the covariate alone
    args = (jnp.asarray(np.stack([target] * 2)), jnp.zeros(2, int), jnp.full(2, n), jnp.zeros(2))
    covariate = jnp.asarray(np.stack([0 * x, x]))
    plain, plain_losses = covariate_sweep(model, pairs, 30, 1e-3, False)(params, *args, keys)
    (got, coefficient), losses = covariate_sweep(model, pairs, 30, 1e-3)(
        (params, jnp.zeros(2)), *args, keys, covariate=covariate
    )
    # Two compiled programs: equal up to float rounding over 30 steps.
    np.testing.assert_allclose(losses[0], plain_losses[0], rtol=1e-3)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-3, atol=1e-5)
    (got, coefficient), losses = covariate_sweep(model, pairs, 30, 1e-2)(
        (params, jnp.zeros(2)), *args, keys, covariate=covariate
    )
    assert float(coefficient[0]) == 0.0 and float(coefficient[1]) > 0.1
    # The fitted member's loss falls below the one that can only read the responses.
    assert losses[1, -10:].mean() < losses[0, -10:].mean()
    with pytest.raises(ValueError, match="a covariate sweep takes a covariate"):
        covariate_sweep(model, pairs, 30, 1e-3)((params, jnp.zeros(2)), *args, keys)
    with pytest.raises(ValueError, match="one without a covariate neither"):
        covariate_sweep(model, pairs, 30, 1e-3, False)(params, *args, keys, covariate=x)
    scores = score_pairs(make_member_scorer(model), got, pairs)
    assert scores.shape == (2, n, 2)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("bias.strengths", (1.0, 1.0), r"distinct positive length biases"),
        ("bias.strengths", (0.0,), r"distinct positive length biases"),
        ("bias.annotator_temperature", 0.0, r"must be positive"),
        ("pool.num_references", 9, r"pool.num_references=9: between 1 and pool.pool_size=8"),
        ("policies.length_bias", 0.0, r"policies.length_bias=0.0: gold units per token"),
        ("policies.losses", {"simpo": {}}, r"must hold 'dpo', the loss the others are compared"),
        ("policies.betas", {"dpo": (0.1,)}, r"positive betas for exactly the losses"),
        ("policies.betas", {"dpo": (0.1,), "simpo": ()}, r"positive betas for exactly the losses"),
        ("policies.kl_budgets", (0.0, 1.0), r"policies.kl_budgets=\(0.0, 1.0\): positive"),
        (
            "policies.checkpoints",
            (2,),
            r"policies.checkpoints=\(2,\): .* the last the run's steps=4",
        ),
        ("policies.checkpoints", (4, 2), r"policies.checkpoints=\(4, 2\): increasing multiples"),
        ("policies.checkpoints", (3, 4), r"multiples of checkpoint_every=2"),
        ("policies.ppo_checkpoints", (1, 4), r"policies.ppo_checkpoints=\(1, 4\): increasing"),
        ("stages.dpo.train.keep_checkpoints", 1, r"keep_checkpoints=1 keeps fewer than the 2"),
        (
            "stages.ppo.train.keep_checkpoints",
            1,
            r"stages.ppo.train.keep_checkpoints=1 keeps fewer",
        ),
        ("stages.reward_model.pairs.num_pairs", 32, r"num_pairs=32 must equal stages.dpo.pairs"),
        ("stages.reward_model.labels.temperature", 0.5, r"must equal stages.dpo.labels"),
    ],  # fmt: skip
)
def test_a_bad_setting_is_refused_before_anything_runs(key, value, message, tmp_path):
    config = preset_config(config_module, **{key: value})
    with pytest.raises(ValueError, match=message):
        length_bias.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
