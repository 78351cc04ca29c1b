"""Reward-model losses: Bradley-Terry, Plackett-Luce, InstructGPT pairwise expansion, ensembles,
normalisation."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from alignax import losses


def ls(x):
    return -math.log1p(math.exp(-x))


def test_bradley_terry_hand_values():
    """d = r_c - r_r - m = 2 - 0.5 - 0.5 = 1: -(0.9) log s(1) - 0.1 log s(-1) + 0.01 (2 + 0.5)^2."""
    loss, m = losses.bradley_terry_loss(
        jnp.array([2.0]),
        jnp.array([0.5]),
        margin=jnp.array([0.5]),
        center_coefficient=0.01,
        label_smoothing=0.1,
    )
    expected = -0.9 * ls(1.0) - 0.1 * ls(-1.0) + 0.01 * 2.5**2
    np.testing.assert_allclose(loss, [expected], rtol=1e-6)
    np.testing.assert_allclose(m["rewards/accuracy"], [1.0])
    loss, _ = losses.bradley_terry_loss(jnp.array([1.0]), jnp.array([1.0]))
    np.testing.assert_allclose(loss, [math.log(2)], rtol=1e-6)
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.bradley_terry_loss(jnp.zeros(1), jnp.zeros(1), label_smoothing=0.5)
    with pytest.raises(ValueError, match="center_coefficient must be >= 0"):
        losses.bradley_terry_loss(jnp.zeros(1), jnp.zeros(1), center_coefficient=-1.0)


def _plackett_luce_reference(rewards, ranks):
    order = np.argsort(ranks, kind="stable")
    r = np.asarray(rewards, np.float64)[order]
    return -sum(r[k] - np.log(np.exp(r[k:]).sum()) for k in range(len(r)))


def test_plackett_luce_matches_reference_and_reduces_to_bradley_terry():
    """PL NLL equals the float64 formula; for K = 2 it equals the BT loss."""
    rewards = np.array([[0.3, -1.0, 2.0, 0.5]])
    ranks = np.array([[2, 3, 0, 1]])
    loss, _ = losses.plackett_luce_loss(jnp.asarray(rewards), jnp.asarray(ranks))
    np.testing.assert_allclose(loss, [_plackett_luce_reference(rewards[0], ranks[0])], rtol=1e-5)
    r2 = jnp.array([[1.5, -0.5]])
    pl, _ = losses.plackett_luce_loss(r2, jnp.array([[0, 1]]))
    bt, _ = losses.bradley_terry_loss(r2[:, 0], r2[:, 1])
    np.testing.assert_allclose(pl, bt, rtol=1e-6)


def test_plackett_luce_mask_equals_dropping_completions():
    """A masked completion (ragged K) gives the loss of the ranking without it."""
    rewards = jnp.array([[0.3, 99.0, 2.0, 0.5]])
    ranks = jnp.array([[2, 0, 0, 1]])  # masked entry's rank is ignored
    mask = jnp.array([[1, 0, 1, 1]])
    loss, _ = losses.plackett_luce_loss(rewards, ranks, mask_BxK=mask)
    expected = _plackett_luce_reference(np.array([0.3, 2.0, 0.5]), np.array([2, 0, 1]))
    np.testing.assert_allclose(loss, [expected], rtol=1e-5)
    g = jax.grad(lambda r: losses.plackett_luce_loss(r, ranks, mask_BxK=mask)[0].sum())(rewards)
    assert np.all(np.isfinite(g)) and float(g[0, 1]) == 0.0


def test_pairwise_ranking_loss_averages_all_pairs():
    """InstructGPT loss = mean over the C(K, 2) ranked pairs of -log s(r_better - r_worse)."""
    rewards = np.array([0.3, -1.0, 2.0, 0.5])
    ranks = np.array([2, 3, 0, 1])
    pairs = [(i, j) for i, j in itertools.permutations(range(4), 2) if ranks[i] < ranks[j]]
    assert len(pairs) == math.comb(4, 2)
    expected = np.mean([-ls(rewards[i] - rewards[j]) for i, j in pairs])
    loss, m = losses.pairwise_ranking_loss(jnp.asarray(rewards)[None], jnp.asarray(ranks)[None])
    np.testing.assert_allclose(loss, [expected], rtol=1e-5)
    np.testing.assert_allclose(m["rewards/accuracy"], [1.0])  # rewards order = ranks order
    # K = 2 is Bradley-Terry.
    two, _ = losses.pairwise_ranking_loss(jnp.array([[1.0, 3.0]]), jnp.array([[1, 0]]))
    np.testing.assert_allclose(two, [-ls(2.0)], rtol=1e-6)
    # Masked completions and their pairs drop out.
    masked, m = losses.pairwise_ranking_loss(
        jnp.array([[1.0, 3.0, 50.0]]), jnp.array([[1, 0, 2]]), mask_BxK=jnp.array([[1, 1, 0]])
    )
    np.testing.assert_allclose(masked, two, rtol=1e-6)
    assert float(m["num_pairs"][0]) == 1


def test_reward_loss_gradients():
    """Gradients of BT, PL and pairwise losses match finite differences (float64)."""
    with jax.enable_x64(True):
        r = jnp.array([[0.3, -1.0, 2.0], [0.1, 0.2, -0.3]], jnp.float64)
        ranks = jnp.array([[1, 2, 0], [0, 2, 1]])
        check_grads(
            lambda r: losses.plackett_luce_loss(r, ranks)[0].sum(),
            (r,),
            order=1,
            modes=("rev",),
            eps=1e-4,
        )
        check_grads(
            lambda r: losses.pairwise_ranking_loss(r, ranks)[0].sum(),
            (r,),
            order=1,
            modes=("rev",),
            eps=1e-4,
        )
        check_grads(
            lambda c: losses.bradley_terry_loss(
                c, r[:, 1], center_coefficient=0.1, label_smoothing=0.1
            )[0].sum(),
            (r[:, 0],),
            order=1,
            modes=("rev",),
            eps=1e-4,
        )


def test_ensemble_rewards():
    """mean, min, mean - lambda std, mean - lambda var over members, by hand."""
    r = jnp.array([[1.0, 0.0], [3.0, 0.0]])  # E = 2, B = 2
    np.testing.assert_allclose(losses.ensemble_rewards(r), [2.0, 0.0])
    np.testing.assert_allclose(losses.ensemble_rewards(r, method="min"), [1.0, 0.0])
    np.testing.assert_allclose(
        losses.ensemble_rewards(r, method="mean_minus_std", uncertainty_penalty=0.5), [1.5, 0.0]
    )
    np.testing.assert_allclose(
        losses.ensemble_rewards(r, method="mean_minus_var", uncertainty_penalty=0.5), [1.5, 0.0]
    )
    with pytest.raises(ValueError, match="method must be one of"):
        losses.ensemble_rewards(r, method="max")


def test_reward_normalization():
    """Gain and bias make the (masked) reference rewards mean 0, std 1."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(3.0, 2.0, size=64), jnp.float32)
    gain, bias = losses.reward_normalization(x)
    y = losses.normalize_rewards(x, gain, bias)
    assert float(jnp.mean(y)) == pytest.approx(0.0, abs=1e-5)
    assert float(jnp.std(y)) == pytest.approx(1.0, abs=1e-4)
    mask = jnp.arange(64) < 32
    gain, bias = losses.reward_normalization(jnp.where(mask, x, 1e6), mask_N=mask)
    y = losses.normalize_rewards(x[:32], gain, bias)
    assert float(jnp.mean(y)) == pytest.approx(0.0, abs=1e-5)
    assert float(jnp.std(y)) == pytest.approx(1.0, abs=1e-4)


def test_process_reward_loss_is_per_step_cross_entropy_over_the_steps_only():
    """Two steps labelled 1 and 0.25 (a Monte Carlo share) at scores 1 and -2; the other
    positions are masked and change nothing, not even the gradient."""
    z = jnp.array([[9.0, 1.0, 7.0, -2.0]])
    mask = jnp.array([[0, 1, 0, 1]])
    y = jnp.array([[0.0, 1.0, 0.0, 0.25]])
    loss, m = losses.process_reward_loss(z, mask, y)
    expected = (-ls(1.0) - (0.25 * ls(-2.0) + 0.75 * ls(2.0))) / 2
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    sig = 1 / (1 + np.exp(-np.array([1.0, -2.0])))
    np.testing.assert_allclose(m["predicted"], sig.mean(), rtol=1e-6)
    assert m["label"] == pytest.approx(0.625) and m["step_accuracy"] == 1.0
    grad = jax.grad(lambda z: losses.process_reward_loss(z, mask, y)[0])(z)
    assert grad[0, 0] == grad[0, 2] == 0
    np.testing.assert_allclose(grad[0, [1, 3]], (sig - [1.0, 0.25]) / 2, rtol=1e-6)
    # At z = 0 every label costs log 2; the loss is smallest where s(z) = y.
    half, _ = losses.process_reward_loss(jnp.zeros((1, 4)), mask, y)
    np.testing.assert_allclose(half, math.log(2), rtol=1e-6)
    best, _ = losses.process_reward_loss(jnp.array([[0, 30.0, 0, math.log(1 / 3)]]), mask, y)
    assert best < loss and best < half


def test_solution_scores_take_the_weakest_step_all_steps_or_the_last():
    z = jnp.array([[0.0, 2.0, 0.0, -1.0], [3.0, 0.0, 0.0, 0.0]])
    mask = jnp.array([[0, 1, 0, 1], [1, 0, 0, 0]])
    s = 1 / (1 + np.exp(-np.array([2.0, -1.0, 3.0])))
    np.testing.assert_allclose(losses.solution_scores(z, mask, "min"), [s[1], s[2]], 1e-6)
    np.testing.assert_allclose(
        losses.solution_scores(z, mask, "product"), [s[0] * s[1], s[2]], 1e-6
    )
    np.testing.assert_allclose(losses.solution_scores(z, mask, "last"), [s[1], s[2]], 1e-6)
    with pytest.raises(ValueError, match="how must be one of"):
        losses.solution_scores(z, mask, "mean")
