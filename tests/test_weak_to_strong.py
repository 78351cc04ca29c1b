"""The weak-to-strong study's loss, trainer and analysis on cases whose answers are known, and its
checks before it runs (its end-to-end run is the notebook's fixture, tests/test_notebooks.py)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

from alignax import losses
from alignax.analysis.policy_eval import score_pairs
from alignax.analysis.weak_to_strong import aggregate, fieller_ratio, gaps, roles
from alignax.models import build_model
from alignax.proxies import proxy_optimizer, reward_model_config
from alignax.sweeps import make_member_scorer, make_reward_model_sweep, make_soft_label_reward_sweep
from alignax.tasks import Annotator, get_task
from configs import weak_to_strong as config_module
from experiments import weak_to_strong
from tests.helpers import preset_config


def test_confidence_loss_follows_its_formula():
    r1, r2 = jnp.array([1.0, -0.5, 0.2]), jnp.array([0.0, 0.5, 0.2])
    p = jnp.array([0.8, 0.3, 1.0])
    d = np.array([1.0, -1.0, 0.0])
    sig = 1 / (1 + np.exp(-d))
    # alpha = 0: cross-entropy to the soft label.
    loss, metrics = losses.confidence_bradley_terry_loss(r1, r2, p)
    expected = -(np.array(p) * np.log(sig) + (1 - np.array(p)) * np.log(1 - sig))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_array_equal(metrics["rewards/agreement"], [1.0, 1.0, 0.0])
    # alpha = 1: cross-entropy to the model's own hardened preference ([d > 0]; a tie is 0).
    hard, _ = losses.confidence_bradley_terry_loss(r1, r2, p, confidence_weight=1.0)
    np.testing.assert_allclose(hard, -np.log(np.where(d > 0, sig, 1 - sig)), rtol=1e-6)
    # In between, linear in alpha; the centring term adds eta (r1 + r2)^2.
    mixed, _ = losses.confidence_bradley_terry_loss(
        r1, r2, p, confidence_weight=0.25, center_coefficient=0.1
    )
    np.testing.assert_allclose(
        mixed, 0.75 * expected + 0.25 * np.asarray(hard) + 0.1 * np.square(r1 + r2), rtol=1e-6
    )
    # A hard label is Bradley-Terry; 1 - eps is label smoothing eps.
    bt, _ = losses.bradley_terry_loss(r1, r2, label_smoothing=0.1)
    soft, _ = losses.confidence_bradley_terry_loss(r1, r2, jnp.full(3, 0.9))
    np.testing.assert_allclose(soft, bt, rtol=1e-6)


def test_the_hardened_label_carries_no_gradient():
    # d(loss)/dd = sigmoid(d) - q: the hardened target is a constant, not a function of d.
    def total(r1, alpha):
        loss, _ = losses.confidence_bradley_terry_loss(
            r1, jnp.zeros(2), jnp.array([0.2, 0.9]), confidence_weight=alpha
        )
        return loss.sum()

    r1 = jnp.array([0.7, -0.4])
    q = 0.4 * np.array([0.2, 0.9]) + 0.6 * np.array([1.0, 0.0])
    np.testing.assert_allclose(
        jax.grad(total)(r1, 0.6), 1 / (1 + np.exp(-np.asarray(r1))) - q, atol=1e-6
    )
    with pytest.raises(ValueError, match="center_coefficient"):
        losses.confidence_bradley_terry_loss(r1, r1, r1, center_coefficient=-1.0)


@pytest.fixture(scope="module")
def tiny_pairs():
    config = config_module.get_config("runlocal")
    task = get_task(config.task_name, config.task)
    pairs = weak_to_strong.labelled_pairs(task, 64, seed=0, split="train")
    model = build_model(reward_model_config(config.model, 4), heads=("reward",))
    return config, pairs, model


def test_hard_labels_train_exactly_as_the_hard_label_sweep(tiny_pairs):
    """Targets 1 and 0 with no confidence term are Bradley-Terry on the pair and on the swapped
    pair: the same members, batches and updates as make_reward_model_sweep."""
    config, pairs, model = tiny_pairs
    p = ml_collections.ConfigDict(dict(config.w2s.to_dict(), steps=6, batch_size=8))
    tx = proxy_optimizer(p)
    keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
    params = jax.vmap(model.init)(keys)
    rngs = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    target = np.stack([pairs["target"], np.ones_like(pairs["target"])])
    tensors = {k: jnp.asarray(pairs[k]) for k in ("tokens", "input_mask")}
    soft = make_soft_label_reward_sweep(
        model, tx, tensors, steps=6, batch_size=8, center_coefficient=0.01, confidence_warmup=0.2
    )
    got, got_losses = soft(
        params, jnp.asarray(target), jnp.zeros(2, int), jnp.full(2, 64), jnp.zeros(2), rngs
    )
    loss = ml_collections.ConfigDict(
        {"name": "bradley_terry", "center_coefficient": 0.01, "label_smoothing": 0.0}
    )
    hard = make_reward_model_sweep(model, tx, loss, tensors, steps=6, batch_size=8)
    # The hard sweep reads the first response as chosen unless it swaps the pair.
    want, want_losses = hard(params, jnp.asarray(target < 0.5), jnp.full(2, 64), rngs)
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"pairs \[0, 60\] \+ \[64, 8\]"):
        soft(params, target, jnp.array([0, 60]), jnp.array([64, 8]), jnp.zeros(2), rngs)


def test_a_weighted_sweep_draws_its_pairs_in_proportion_to_their_weights(tiny_pairs):
    """The same pairs twice, the first copy labelled by gold, the second against it: a member
    weighting the first copy learns gold's order, one weighting the second copy the reverse."""
    config, pairs, model = tiny_pairs
    twice = {k: jnp.asarray(np.concatenate([pairs[k]] * 2)) for k in ("tokens", "input_mask")}
    target = np.concatenate([pairs["target"], 1 - pairs["target"]]).astype(np.float32)
    first_copy = np.repeat([1.0, 0.0], 64).astype(np.float32)
    p = ml_collections.ConfigDict(dict(config.w2s.to_dict(), steps=60, learning_rate=1e-2))
    sweep = make_soft_label_reward_sweep(
        model,
        proxy_optimizer(p),
        twice,
        steps=60,
        batch_size=16,
        center_coefficient=0.0,
        confidence_warmup=0.0,
        weighted=True,
    )
    keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
    weight = jnp.asarray(np.stack([first_copy, 1 - first_copy]))
    args = (jnp.asarray(np.stack([target] * 2)), jnp.zeros(2, int), jnp.full(2, 128))
    trained, _ = sweep(jax.vmap(model.init)(keys), *args, jnp.zeros(2), keys, weight)
    scores = score_pairs(make_member_scorer(model), trained, pairs)
    agree = ((scores[..., 0] > scores[..., 1]) == (pairs["target"] > 0.5)).mean(axis=1)
    assert agree[0] > 0.6 and agree[1] < 0.4, agree
    with pytest.raises(ValueError, match="positive sum in each member's range"):
        sweep(jax.vmap(model.init)(keys), *args, jnp.zeros(2), keys, jnp.zeros((2, 128)))
    with pytest.raises(ValueError, match="a weighted sweep takes a weight"):
        sweep(jax.vmap(model.init)(keys), *args, jnp.zeros(2), keys)


def test_each_width_trains_its_weak_model_ceiling_and_students():
    assert roles((4, 8, 16), 4) == ["weak"]
    assert roles((4, 8, 16), 8) == ["weak", "ceiling", "naive_d4", "confidence_d4"]
    assert roles((4, 8, 16), 16) == [
        "ceiling",
        "naive_d4",
        "confidence_d4",
        "naive_d8",
        "confidence_d8",
    ]
    assert gaps((4, 8, 16)) == [(4, 8), (4, 16), (8, 16)]


def test_gold_labels_say_which_response_has_the_higher_gold_reward(tiny_pairs):
    config, pairs, _ = tiny_pairs
    task = get_task(config.task_name, config.task)
    again = task.comparison_dataset(64, seed=0, annotator=Annotator(kind="hard"), split="train")
    # The pairs are the task's, each in random order (both orders occur), labelled by gold.
    assert 0.2 < pairs["target"].mean() < 0.8
    first_is_best = (pairs["tokens"][:, 0] == again["tokens"][:, 0]).all(axis=-1)
    np.testing.assert_array_equal(pairs["target"] == 1.0, first_is_best)


def test_fieller_interval_is_the_t_interval_when_the_denominator_is_known():
    a = np.array([0.10, 0.14, 0.08, 0.12, 0.11])
    point, low, high = fieller_ratio(a, np.full(5, 0.2))
    half = stats.t.ppf(0.975, 4) * a.std(ddof=1) / np.sqrt(5)
    assert point == pytest.approx(a.mean() / 0.2)
    assert (low, high) == pytest.approx(((a.mean() - half) / 0.2, (a.mean() + half) / 0.2))
    # A denominator not resolved from 0 leaves the ratio unbounded.
    assert fieller_ratio(a, np.array([0.1, -0.1, 0.05, -0.08, 0.02]))[1:] == (-np.inf, np.inf)


def test_pgr_and_differences_are_paired_within_seeds():
    """Three seeds where the student recovers half of every seed's own gap exactly."""
    widths, ns = (4, 8), [1, 2]
    tables = {}
    for seed, (weak, ceiling) in enumerate([(0.6, 0.8), (0.7, 0.8), (0.65, 0.85)]):
        student = weak + 0.5 * (ceiling - weak)
        row = lambda acc: {"accuracy": acc, "best_of_n": [0.0, acc]}  # noqa: E731
        tables[str(seed)] = {
            "d4/weak": row(weak),
            "d8/ceiling": row(ceiling),
            "d8/naive_d4": row(student),
            "d8/confidence_d4": row(student + 0.01),
        }
    gap = aggregate(tables, widths, ns)["gaps"]["d4->d8"]
    assert gap["naive"]["pgr"] == pytest.approx((0.5, 0.5, 0.5))
    assert gap["confidence_minus_naive"][0] == pytest.approx(0.01)
    assert gap["best_of_n_naive_minus_weak"][1][0] == pytest.approx(np.mean([0.1, 0.05, 0.1]))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("w2s.inits", ("pretrained", "distilled"), r"w2s.inits=.*: each must be one of"),
        ("w2s.widths", (8, 4), r"w2s.widths=\(8, 4\): at least two, ascending"),
        ("pool.pool_size", 1, r"pool.pool_size=1: best-of-n needs 2"),
    ],
)
def test_a_bad_setting_is_refused_before_anything_runs(key, value, message, tmp_path):
    config = preset_config(config_module, **{key: value})
    with pytest.raises(ValueError, match=message):
        weak_to_strong.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
