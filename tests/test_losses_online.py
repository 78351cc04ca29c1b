"""PPO and GRPO losses: hand values, aggregation modes, masked == sliced, finite gradients on
fully masked rows, gradient checks."""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jax.test_util import check_grads

from alignax import losses


def test_ppo_policy_clipping_by_hand():
    """Token losses -min(rho A, clip(rho) A): rho = e^0.5 > 1.2 with A = 1 is clipped (loss -1.2);
    rho = e^-0.5 < 0.8 with A = -1 is clipped (loss 0.8); rho = 1 passes (loss -2)."""
    logps = jnp.array([[0.5, -0.5, 0.0]])
    old = jnp.zeros((1, 3))
    a = jnp.array([[1.0, -1.0, 2.0]])
    loss, m = losses.ppo_policy_loss(
        logps, old, a, jnp.ones((1, 3)), clip_eps=0.2, aggregation="sequence_mean"
    )
    np.testing.assert_allclose(loss, [(-1.2 + 0.8 - 2.0) / 3], rtol=1e-6)
    np.testing.assert_allclose(m["policy/clip_fraction"], [2 / 3], rtol=1e-6)
    # approx KL (k3 of old || new) per token: e^{x} - 1 - x, x = logp - old
    k3 = [math.expm1(x) - x for x in (0.5, -0.5, 0.0)]
    np.testing.assert_allclose(m["policy/approx_kl"], [sum(k3) / 3], rtol=1e-6)
    # clipped tokens carry no gradient; the unclipped one has d/dlogp = -rho A = -2.
    g = jax.grad(
        lambda lp: losses.ppo_policy_loss(lp, old, a, jnp.ones((1, 3)), aggregation="sequence_sum")[
            0
        ].sum()
    )(logps)
    np.testing.assert_allclose(g, [[0.0, 0.0, -2.0]], atol=1e-6)


def test_ppo_clip_fraction_counts_exactly_the_tokens_whose_clipped_branch_is_active():
    """clip_eps 0.2. Row 0, five tokens (log-ratio, A): (.5, +1) clipped high; (.5, -1) outside
    the range but -min takes the unclipped rho A; (-.5, -1) clipped low; (-.5, +1) outside but
    unclipped; (.1, +1) inside: 2 of 5. Row 1: (.5, +1) clipped, (0, +1) not, and three masked
    tokens that would be clipped: 1 of 2. The gradient is zero on exactly the counted tokens
    (and the masked ones), -rho A on the others."""
    logps = jnp.array([[0.5, 0.5, -0.5, -0.5, 0.1], [0.5, 0.0, 0.5, -0.5, 3.0]])
    a = jnp.array([[1.0, -1.0, -1.0, 1.0, 1.0], [1.0, 1.0, 1.0, -1.0, 1.0]])
    mask = jnp.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    old = jnp.zeros((2, 5))

    def loss(lp, aggregation="sequence_mean"):
        return losses.ppo_policy_loss(lp, old, a, mask, clip_eps=0.2, aggregation=aggregation)

    value, m = loss(logps)
    np.testing.assert_allclose(m["policy/clip_fraction"], [2 / 5, 1 / 2], rtol=1e-6)
    e = math.exp
    row0 = [-1.2, e(0.5), 0.8, -e(-0.5), -e(0.1)]
    np.testing.assert_allclose(value, [sum(row0) / 5, (-1.2 - 1.0) / 2], rtol=1e-6)
    g = jax.grad(lambda lp: loss(lp, "sequence_sum")[0].sum())(logps)
    expected = [[0.0, e(0.5), 0.0, -e(-0.5), -e(0.1)], [0.0, -1.0, 0.0, 0.0, 0.0]]
    np.testing.assert_allclose(g, expected, rtol=1e-6, atol=1e-7)


def test_clip_low_and_high_fractions_by_hand():
    """GRPO's split of the clip fraction (clip_eps_low 0.2, clip_eps_high 0.28). Row 0, A = +1,
    log-ratios [.5, -.5, .1, .5]: the two rho = e^.5 > 1.28 are clipped high, rho = e^-.5 < .8
    is not clipped (A > 0): high 2/4, low 0. Row 1, A = -1, [.5, -.5, -.5, masked .5]: the two
    e^-.5 are clipped low, e^.5 is not (A < 0): low 2/3, high 0. Per token over the batch:
    4 of 7 clipped."""
    logps = jnp.array([[0.5, -0.5, 0.1, 0.5], [0.5, -0.5, -0.5, 0.5]])
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    args = (logps, jnp.zeros((2, 4)), None, jnp.array([1.0, -1.0]), mask)
    kw = dict(beta=0.0, clip_eps_low=0.2, clip_eps_high=0.28)
    _, m = losses.grpo_loss(*args, **kw)
    np.testing.assert_allclose(m["policy/clip_fraction"], [2 / 4, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(m["policy/clip_high_fraction"], [2 / 4, 0.0], rtol=1e-6)
    np.testing.assert_allclose(m["policy/clip_low_fraction"], [0.0, 2 / 3], rtol=1e-6)
    _, tok = losses.grpo_loss(*args, **kw, metric_aggregation="token_mean")
    assert float(jnp.mean(tok["policy/clip_fraction"])) == pytest.approx(4 / 7)


def test_value_clip_fraction_counts_the_tokens_where_the_clipped_error_wins():
    """old V = 0, R = 1, value_clip_eps 0.5. V = .9 -> V_clip .5: errors .01 vs .25, clipped
    wins; V = 2 -> .5: 1 vs .25, unclipped wins; V = .3 inside the range: equal errors, not
    counted; V = 1.2 -> .5: .04 vs .25, clipped wins; a masked V = .9 is not counted: 2 of 4.
    The loss is 0.5 max(...) per token; only the tokens where the unclipped error wins carry a
    gradient, V - R."""
    v = jnp.array([[0.9, 2.0, 0.3, 1.2, 0.9]])
    mask = jnp.array([[1, 1, 1, 1, 0]])

    def loss(values, aggregation="sequence_mean"):
        return losses.ppo_value_loss(
            values,
            jnp.zeros((1, 5)),
            jnp.ones((1, 5)),
            mask,
            value_clip_eps=0.5,
            aggregation=aggregation,
        )

    value, m = loss(v)
    np.testing.assert_allclose(m["value/clip_fraction"], [2 / 4], rtol=1e-6)
    np.testing.assert_allclose(m["value/error"], [(0.01 + 1.0 + 0.49 + 0.04) / 4], rtol=1e-5)
    np.testing.assert_allclose(value, [0.5 * (0.25 + 1.0 + 0.49 + 0.25) / 4], rtol=1e-5)
    g = jax.grad(lambda x: loss(x, "sequence_sum")[0].sum())(v)
    np.testing.assert_allclose(g, [[0.0, 1.0, -0.7, 0.0, 0.0]], rtol=1e-5, atol=1e-6)


def test_clip_higher_uses_separate_upper_bound():
    """With clip_eps_high = 0.6, rho = e^0.5 = 1.65 > 1.6 is clipped to 1.6; 0.28 bound likewise."""
    logps, a = jnp.array([[0.5]]), jnp.array([[1.0]])
    loss, _ = losses.ppo_policy_loss(
        logps, jnp.zeros((1, 1)), a, jnp.ones((1, 1)), clip_eps=0.2, clip_eps_high=0.6
    )
    np.testing.assert_allclose(loss, [-1.6], rtol=1e-6)
    loss, m = losses.grpo_loss(
        logps,
        jnp.zeros((1, 1)),
        None,
        jnp.array([1.0]),
        jnp.ones((1, 1)),
        beta=0.0,
        clip_eps_low=0.2,
        clip_eps_high=0.28,
    )
    np.testing.assert_allclose(loss, [-1.28], rtol=1e-6)
    np.testing.assert_allclose(m["policy/clip_high_fraction"], [1.0])


def test_value_loss_by_hand():
    """0.5 max((V - R)^2, (V_clip - R)^2): V = 2, old V = 0, R = 1, vf_clip 0.5:
    unclipped (1)^2 = 1, clipped V = 0.5 -> 0.25, so 0.5; and V = -1 -> V_clip = -0.5:
    max(4, 2.25)."""
    v = jnp.array([[2.0, -1.0]])
    loss, m = losses.ppo_value_loss(
        v,
        jnp.zeros((1, 2)),
        jnp.ones((1, 2)),
        jnp.ones((1, 2)),
        value_clip_eps=0.5,
        aggregation="sequence_mean",
    )
    np.testing.assert_allclose(loss, [(0.5 * 1.0 + 0.5 * 4.0) / 2], rtol=1e-6)


def test_ppo_loss_combines_terms():
    """ppo_loss = policy + c_v value - c_H entropy + gamma_ptx NLL_ptx."""
    z, o = jnp.zeros((2, 3)), jnp.ones((2, 3))
    ent = jnp.full((2, 3), 0.7)
    loss, m = losses.ppo_loss(
        z,
        z,
        o,
        z,
        z,
        o,
        o,
        entropy_BxT=ent,
        ptx_nll=jnp.array([2.0, 4.0]),
        value_coef=0.5,
        entropy_coef=0.1,
        ptx_coef=0.25,
        aggregation="sequence_mean",
    )
    # policy -1, value 0.5 * 1 = 0.5, entropy 0.7
    np.testing.assert_allclose(loss, [-1 + 0.25 - 0.07 + 0.5, -1 + 0.25 - 0.07 + 1.0], rtol=1e-6)
    np.testing.assert_allclose(m["entropy"], [0.7, 0.7], rtol=1e-6)


def test_aggregation_modes():
    """Batch means of the per-example outputs equal the GRPO / DAPO / Dr.GRPO aggregates."""
    x = jnp.array([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    m = jnp.array([[1, 1, 1], [1, 0, 0]])
    agg = lambda mode, **k: float(losses.aggregate_tokens(x, m, mode=mode, **k).mean())
    assert agg("sequence_mean") == pytest.approx((2.0 + 4.0) / 2)
    assert agg("token_mean") == pytest.approx(10.0 / 4)
    assert agg("max_length", max_length=5) == pytest.approx((6.0 / 5 + 4.0 / 5) / 2)
    assert agg("sequence_sum") == pytest.approx(5.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        losses.aggregate_tokens(x, m, mode="mean")


def test_grpo_kl_term_is_k3():
    """GRPO adds beta * k3 per token: logp = 0, ref = log 0.5 -> k3 = 0.5 - 1 - log 0.5."""
    loss, m = losses.grpo_loss(
        jnp.zeros((1, 2)),
        None,
        jnp.full((1, 2), math.log(0.5)),
        jnp.array([0.0]),
        jnp.ones((1, 2)),
        beta=0.1,
    )
    k3 = 0.5 - 1 - math.log(0.5)
    np.testing.assert_allclose(m["kl"], [k3], rtol=1e-6)
    np.testing.assert_allclose(loss, [0.1 * k3], rtol=1e-6)
    with pytest.raises(ValueError, match="ref_logps_BxT is None"):
        losses.grpo_loss(jnp.zeros((1, 2)), None, None, jnp.zeros(1), jnp.ones((1, 2)), beta=0.1)


def _token_losses():
    """Every token-level loss as f(main_BxT, mask_BxT) with fixed other inputs derived from it."""

    def policy(x, mask, mode):
        return losses.ppo_policy_loss(
            x, 0.8 * x, jnp.cos(3 * x), mask, aggregation=mode, max_length=8
        )[0]

    def value(x, mask, mode):
        return losses.ppo_value_loss(x, 0.5 * x, jnp.sin(x), mask, aggregation=mode, max_length=8)[
            0
        ]

    def grpo(x, mask, mode):
        return losses.grpo_loss(
            x,
            0.9 * x,
            x - 0.3,
            2.0 * x[:, 0] + 1.5,
            mask,
            beta=0.05,
            clip_eps_high=0.28,
            aggregation=mode,
            max_length=8,
        )[0]

    def full(x, mask, mode):
        return losses.ppo_loss(
            x,
            0.8 * x,
            jnp.cos(x),
            x,
            0.5 * x,
            jnp.sin(x),
            mask,
            entropy_BxT=jnp.abs(x),
            entropy_coef=0.01,
            aggregation=mode,
            max_length=8,
        )[0]

    return {"ppo_policy": policy, "ppo_value": value, "grpo": grpo, "ppo": full}


MODES = ("sequence_mean", "token_mean", "max_length", "sequence_sum")


@settings(max_examples=15, deadline=None)
@given(
    st.sampled_from(sorted(_token_losses())),
    st.sampled_from(MODES),
    st.integers(0, 3),
    st.floats(-1e4, 1e4) | st.just(float("nan")),
)
def test_masked_equals_sliced(name, mode, extra, garbage):
    """Padding responses with garbage under a zero mask leaves every token loss unchanged."""
    fn = _token_losses()[name]
    rng = np.random.default_rng(extra)
    x = jnp.asarray(rng.normal(size=(3, 4)) * 0.3 - 1.0, jnp.float32)
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    base = fn(x, mask, mode)
    xp = jnp.concatenate([x, jnp.full((3, extra), garbage, jnp.float32)], 1)
    mp = jnp.concatenate([mask, jnp.zeros((3, extra), jnp.int32)], 1)
    np.testing.assert_allclose(fn(xp, mp, mode), base, rtol=1e-5, atol=1e-6)
    # Sliced: a row's trailing padded positions dropped entirely gives the same row loss
    # (except token_mean, whose per-row scale is the batch size over the batch token count).
    if mode != "token_mean":
        np.testing.assert_allclose(fn(x[1:2, :2], mask[1:2, :2], mode), base[1:2], rtol=1e-5)


@pytest.mark.parametrize("name", sorted(_token_losses()))
@pytest.mark.parametrize("mode", MODES)
def test_finite_gradients_with_fully_masked_rows(name, mode):
    """Gradients are finite (and zero on masked positions) even for a fully masked row with
    garbage inputs."""
    fn = _token_losses()[name]
    x = jnp.array([[-0.5, -1.0, 1e4], [1e4, -1e4, 1e4]])
    mask = jnp.array([[1, 1, 0], [0, 0, 0]])
    g = jax.grad(lambda x: fn(x, mask, mode).mean())(x)
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(np.asarray(g)[np.asarray(mask) == 0], 0.0)


@pytest.mark.parametrize("name", sorted(_token_losses()))
def test_check_grads(name):
    """Reverse-mode gradients match finite differences in float64 (away from clip kinks). The
    side inputs (old log-probs, advantages, ...) are constants here, since the losses treat them
    as constants (stop_gradient)."""
    with jax.enable_x64(True):
        x = jnp.array([[-0.52, -1.13, -0.71], [-0.33, -0.94, -2.05]], jnp.float64)
        mask = jnp.array([[1, 1, 0], [1, 1, 1]])
        x0 = x + 0.01  # side inputs frozen at a nearby point

        check_grads(
            lambda x: fn_split(name, x, x0, mask).sum(),
            (x,),
            order=1,
            modes=("rev",),
            eps=1e-4,
            atol=1e-5,
            rtol=1e-5,
        )


def fn_split(name, x, x0, mask):
    mode = "sequence_mean"
    if name == "ppo_policy":
        return losses.ppo_policy_loss(x, 0.8 * x0, jnp.cos(3 * x0), mask, aggregation=mode)[0]
    if name == "ppo_value":
        return losses.ppo_value_loss(x, 0.5 * x0, jnp.sin(x0), mask, aggregation=mode)[0]
    if name == "grpo":
        return losses.grpo_loss(
            x,
            0.9 * x0,
            x0 - 0.3,
            2.0 * x0[:, 0] + 1.5,
            mask,
            beta=0.05,
            clip_eps_high=0.28,
            aggregation=mode,
        )[0]
    return losses.ppo_loss(
        x,
        0.8 * x0,
        jnp.cos(x0),
        x,
        0.5 * x0,
        jnp.sin(x0),
        mask,
        entropy_BxT=jnp.abs(x),
        entropy_coef=0.01,
        aggregation=mode,
    )[0]
