"""alignax.rl.advantages: KL estimators, KL-penalised rewards, GAE vs a float64 loop, whitening,
group baselines."""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from alignax.rl import advantages as adv


def test_kl_estimators_hand_values():
    """k1 = -log r, k2 = (log r)^2 / 2, k3 = r - 1 - log r with r = pi_ref / pi."""
    logp, ref = math.log(0.5), math.log(0.25)  # log r = log 0.5
    lr = math.log(0.5)
    assert float(adv.token_kl(logp, ref, estimator="k1")) == pytest.approx(-lr)
    assert float(adv.token_kl(logp, ref, estimator="k2")) == pytest.approx(0.5 * lr**2)
    assert float(adv.token_kl(logp, ref, estimator="k3")) == pytest.approx(0.5 - 1 - lr)
    with pytest.raises(ValueError, match="estimator must be one of"):
        adv.token_kl(logp, ref, estimator="k4")


def test_kl_estimators_are_unbiased_in_expectation():
    """Under exact expectation over pi, k1 and k3 both equal KL(pi || pi_ref)."""
    pi = np.array([0.5, 0.3, 0.2])
    ref = np.array([0.2, 0.2, 0.6])
    kl = float(np.sum(pi * np.log(pi / ref)))
    for est in ("k1", "k3"):
        k = adv.token_kl(jnp.log(pi), jnp.log(ref), estimator=est)
        assert float(jnp.sum(pi * k)) == pytest.approx(kl, rel=1e-5)


def test_kl_penalized_rewards_places_score_at_last_token_and_eos_penalty():
    """Score lands on the last masked token (right and left padding); -kl_coef * k1 elsewhere;
    the missing-EOS penalty is subtracted only for rows without EOS."""
    logps = jnp.array([[-1.0, -1.0, -1.0, 0.0], [0.0, -1.0, -1.0, -1.0]])
    ref = jnp.array([[-2.0, -1.0, -1.5, 0.0], [0.0, -2.0, -1.0, -1.5]])
    mask = jnp.array([[1, 1, 1, 0], [0, 1, 1, 1]])
    tokens = jnp.array([[5, 6, 2, 0], [0, 5, 6, 7]])  # eos_id = 2: row 0 ends, row 1 does not
    eos = adv.ended_with_eos(tokens, mask, eos_id=2)
    np.testing.assert_array_equal(eos, [True, False])
    rewards, m = adv.kl_penalized_rewards(
        jnp.array([1.0, 2.0]),
        logps,
        ref,
        mask,
        kl_coef=0.1,
        ended_with_eos_B=eos,
        missing_eos_penalty=1.0,
    )
    # k1 per token = logp - ref: row 0 [1, 0, 0.5, -], row 1 [-, 1, 0, 0.5]
    expected = np.array([[-0.1, 0.0, -0.05 + 1.0, 0.0], [0.0, -0.1, 0.0, -0.05 + 2.0 - 1.0]])
    np.testing.assert_allclose(rewards, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m["kl"], [1.5, 1.5], rtol=1e-6)
    with pytest.raises(ValueError, match="needs ended_with_eos_B"):
        adv.kl_penalized_rewards(
            jnp.zeros(2), logps, ref, mask, kl_coef=0.1, missing_eos_penalty=1.0
        )


def _gae_loop(rewards, values, mask, gamma, lam):
    """Slow float64 reference: per row, GAE over the contiguous scored span only."""
    rewards, values, mask = (np.asarray(x, np.float64) for x in (rewards, values, mask))
    advantages = np.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        idx = np.nonzero(mask[b])[0]
        last = 0.0
        for k in reversed(range(len(idx))):
            t = idx[k]
            next_value = values[b, idx[k + 1]] if k + 1 < len(idx) else 0.0
            delta = rewards[b, t] + gamma * next_value - values[b, t]
            last = delta + gamma * lam * last
            advantages[b, t] = last
    return advantages, (advantages + values) * mask


@pytest.mark.parametrize("gamma, lam", [(1.0, 1.0), (0.99, 0.95), (0.9, 0.0)])
def test_gae_scan_matches_python_loop(gamma, lam):
    """Scan GAE equals the float64 Python-loop reference on right- and left-padded rows."""
    rng = np.random.default_rng(0)
    B, T = 4, 7
    rewards, values = rng.normal(size=(B, T)), rng.normal(size=(B, T))
    lengths = [7, 4, 1, 0]
    mask = np.zeros((B, T), np.int32)
    for b, n in enumerate(lengths):
        if b % 2:
            mask[b, T - n :] = 1  # left-padded
        else:
            mask[b, :n] = 1  # right-padded
    a, r = adv.gae(
        jnp.asarray(rewards, jnp.float32),
        jnp.asarray(values, jnp.float32),
        jnp.asarray(mask),
        gamma=gamma,
        lam=lam,
    )
    a_ref, r_ref = _gae_loop(rewards, values, mask, gamma, lam)
    np.testing.assert_allclose(a, a_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r, r_ref, rtol=1e-5, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 5), st.integers(0, 4), st.floats(-1e6, 1e6) | st.just(float("nan")))
def test_gae_ignores_padding(length, extra, garbage):
    """Masked == sliced: padding a response with garbage rewards/values under a zero mask leaves
    its advantages and returns unchanged."""
    rng = np.random.default_rng(length)
    r, v = rng.normal(size=(1, length)), rng.normal(size=(1, length))
    a, ret = adv.gae(jnp.asarray(r), jnp.asarray(v), jnp.ones((1, length)), gamma=0.95, lam=0.9)
    pad = np.full((1, extra), garbage)
    rp, vp = np.concatenate([r, pad], 1), np.concatenate([v, pad], 1)
    mp = np.concatenate([np.ones((1, length)), np.zeros((1, extra))], 1)
    a2, ret2 = adv.gae(jnp.asarray(rp), jnp.asarray(vp), jnp.asarray(mp), gamma=0.95, lam=0.9)
    np.testing.assert_allclose(a2[:, :length], a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ret2[:, :length], ret, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(a2[:, length:]) == 0)


def test_whiten_masked_statistics():
    """Whitening uses masked mean / unbiased variance; shift_mean=False keeps the mean."""
    x = jnp.array([[1.0, 2.0, 3.0, 100.0]])
    mask = jnp.array([[1, 1, 1, 0]])
    w = adv.whiten(x, mask)
    # mean 2, unbiased var 1
    np.testing.assert_allclose(w, [[-1.0, 0.0, 1.0, 0.0]], atol=1e-6)
    w2 = adv.whiten(x, mask, shift_mean=False)
    np.testing.assert_allclose(w2, [[1.0, 2.0, 3.0, 0.0]], atol=1e-6)
    g = jax.grad(lambda x: adv.whiten(x, jnp.zeros((1, 4))).sum())(x)
    assert np.all(np.isfinite(g))  # fully masked: finite


def test_group_advantages_with_and_without_std():
    """GRPO advantages: (r - mean) / (std + eps) per group, flat and [B, G] inputs agree."""
    r = jnp.array([[1.0, 0.0, 0.0, 1.0], [3.0, 3.0, 3.0, 3.0]])
    a = adv.group_advantages(r, eps=0.0 + 1e-4)
    std = np.std([1, 0, 0, 1], ddof=1)  # 0.5774
    np.testing.assert_allclose(a[0], (np.array([1, 0, 0, 1]) - 0.5) / (std + 1e-4), rtol=1e-5)
    np.testing.assert_allclose(a[1], 0.0)  # constant group: zero advantage, no NaN
    flat = adv.group_advantages(r.reshape(-1), group_size=4)
    np.testing.assert_allclose(flat.reshape(2, 4), a)
    np.testing.assert_allclose(
        adv.group_advantages(r, scale_by_std=False)[0], [0.5, -0.5, -0.5, 0.5]
    )
    with pytest.raises(ValueError, match="group_size"):
        adv.group_advantages(jnp.zeros(6), group_size=4)


def test_rloo_baseline_excludes_self():
    """RLOO: the baseline of sample i is the mean of the other G - 1 rewards."""
    r = np.array([[1.0, 0.0, 2.0, 5.0]])
    a = adv.rloo_advantages(jnp.asarray(r))
    for i in range(4):
        others = np.delete(r[0], i)
        assert float(a[0, i]) == pytest.approx(r[0, i] - others.mean())
    # Changing sample i's own reward shifts its baseline by nothing.
    r2 = r.copy()
    r2[0, 0] = 10.0
    a2 = adv.rloo_advantages(jnp.asarray(r2))
    assert float(a2[0, 0] - a[0, 0]) == pytest.approx(9.0)
    with pytest.raises(ValueError, match="at least 2"):
        adv.rloo_advantages(jnp.zeros((2, 1)))


def test_grpo_advantages_group_batch_and_no_scaling_by_hand():
    """rewards [1, 0 | 3, 3], G = 2: centred [0.5, -0.5, 0, 0]; group std [0.707, 0];
    batch std (Bessel) of [1, 0, 3, 3] = 1.5."""
    r = jnp.array([1.0, 0.0, 3.0, 3.0])
    none = adv.grpo_advantages(r, group_size=2, scale_rewards="none")
    group = adv.grpo_advantages(r, group_size=2, scale_rewards="group")
    batch = adv.grpo_advantages(r, group_size=2, scale_rewards="batch")
    np.testing.assert_allclose(none, [0.5, -0.5, 0.0, 0.0])
    np.testing.assert_allclose(
        group, [0.5 / (0.5**0.5 + 1e-4), -0.5 / (0.5**0.5 + 1e-4), 0, 0], rtol=1e-6
    )
    np.testing.assert_allclose(batch, [0.5 / 1.5001, -0.5 / 1.5001, 0, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="scale_rewards must be one of"):
        adv.grpo_advantages(r, group_size=2, scale_rewards="global")
