"""GRPO-family losses (alignax/losses/grpo.py): GSPO, CISPO, SAPO, sequence-level RLOO, reward
scaling, importance-weighted KL, metric aggregation and precision; values and gradients by hand,
finite at log-ratios of +-1e4."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from alignax import losses, rl
from alignax.state import TrainState
from tests.helpers import EOS, toy_policy, toy_prompts, toy_score


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_grpo_keeps_float64_and_computes_low_precision_in_float32():
    """float64 inputs give a float64 loss; bfloat16 advantages are computed in float32."""
    with jax.enable_x64(True):
        loss, m = losses.grpo_loss(
            jnp.zeros((1, 2), jnp.float64),
            None,
            jnp.zeros((1, 2), jnp.float64),
            jnp.array([1.0 + 1e-12], jnp.float64),
            jnp.ones((1, 2)),
        )
        assert loss.dtype == jnp.float64 and float(loss[0]) == -(1.0 + 1e-12)
    loss, _ = losses.grpo_loss(
        jnp.zeros((1, 2)), None, None, jnp.array([1.0], jnp.bfloat16), jnp.ones((1, 2)), beta=0.0
    )
    assert loss.dtype == jnp.float32


def test_metric_aggregation_sequence_vs_token_by_hand():
    """Sequence A has 1 token, clipped (rho = e^0.5 > 1.2, A > 0); sequence B 3 unclipped
    tokens. Per sequence the clip fraction averages to (1 + 0) / 2; per token to 1 / 4. KL
    (k3 with ref = old = 0 on A's token: e^-.5 - 1 + .5) likewise."""
    logps = jnp.array([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = jnp.array([[1, 0, 0], [1, 1, 1]])
    args = (logps, jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.array([1.0, 1.0]), mask)
    _, seq = losses.grpo_loss(*args, metric_aggregation="sequence_mean")
    _, tok = losses.grpo_loss(*args, metric_aggregation="token_mean")
    assert float(jnp.mean(seq["policy/clip_fraction"])) == pytest.approx(0.5)
    assert float(jnp.mean(tok["policy/clip_fraction"])) == pytest.approx(0.25)
    k3 = math.exp(-0.5) - 1 + 0.5
    assert float(jnp.mean(seq["kl"])) == pytest.approx(k3 / 2, rel=1e-6)
    assert float(jnp.mean(tok["kl"])) == pytest.approx(k3 / 4, rel=1e-6)


def test_importance_weighted_kl_by_hand_and_its_gradient():
    """kl = rho * k3: logp 0.5, old 0, ref 0 -> e^0.5 (e^-0.5 - 1 + 0.5); the ratio keeps its
    gradient, so d kl / d logp = rho (k3 + 1 - e^(ref - logp)) (checked by finite differences)."""
    logps, mask = jnp.array([[0.5]]), jnp.ones((1, 1))
    kw = dict(beta=1.0, clip_eps_low=0.2, kl_importance_weighted=True)
    _, m = losses.grpo_loss(logps, jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.zeros(1), mask, **kw)
    expected = math.exp(0.5) * (math.exp(-0.5) - 1 + 0.5)
    assert float(m["kl"][0]) == pytest.approx(expected, rel=1e-6)
    with jax.enable_x64(True):

        def f(lp):
            return losses.grpo_loss(
                lp, jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.zeros(1), jnp.ones((1, 2)), **kw
            )[0].sum()

        check_grads(f, (jnp.array([[0.3, -0.2]]),), order=1, modes=("rev",), eps=1e-5)
        g = jax.grad(f)(jnp.array([[0.3, -0.2]]))
        lp = np.array([0.3, -0.2])
        by_hand = np.exp(lp) * ((np.exp(-lp) - 1 + lp) + 1 - np.exp(-lp)) / 2
        np.testing.assert_allclose(g[0], by_hand, rtol=1e-6)


def test_gspo_by_hand():
    """Token log-ratios [0.2, -0.1] (third token masked): s = e^0.05. With e = 0.2 it is
    unclipped (loss -s A, gradient -s A / 2 per token); with the paper's 3e-4 / 4e-4 it is
    clipped at 1.0004 (no gradient, clip fraction 1)."""
    logps, old = jnp.array([[0.2, -0.1, 7.0]]), jnp.zeros((1, 3))
    mask, a = jnp.array([[1, 1, 0]]), jnp.array([1.0])
    s = math.exp(0.05)
    loss, m = losses.gspo_loss(logps, old, None, a, mask, clip_eps_low=0.2, clip_eps_high=0.2)
    assert float(loss[0]) == pytest.approx(-s, rel=1e-6)
    g = jax.grad(
        lambda lp: losses.gspo_loss(lp, old, None, a, mask, clip_eps_low=0.2, clip_eps_high=0.2)[
            0
        ].sum()
    )(logps)
    np.testing.assert_allclose(g, [[-s / 2, -s / 2, 0.0]], rtol=1e-6)
    loss, m = losses.gspo_loss(logps, old, None, a, mask)
    assert float(loss[0]) == pytest.approx(-1.0004, rel=1e-6)
    assert float(m["policy/clip_fraction"][0]) == 1.0
    g = jax.grad(lambda lp: losses.gspo_loss(lp, old, None, a, mask)[0].sum())(logps)
    np.testing.assert_array_equal(g, 0.0)


def test_cispo_by_hand_keeps_gradients_of_clipped_tokens():
    """pi / pi_old = [2, 1], e_high = 0.5: rhat = [1.5, 1]; loss = -(1.5 log .5 + log .25) / 2
    (token mean), gradient -rhat A / 2 even on the clipped token (PPO would give it 0)."""
    logps = jnp.log(jnp.array([[0.5, 0.25]]))
    old = jnp.log(jnp.array([[0.25, 0.25]]))
    a, mask = jnp.array([1.0]), jnp.ones((1, 2))

    def f(lp):
        return losses.cispo_loss(lp, old, None, a, mask, clip_eps_high=0.5)

    loss, m = f(logps)
    assert float(loss[0]) == pytest.approx(-(1.5 * math.log(0.5) + math.log(0.25)) / 2, rel=1e-6)
    assert float(m["policy/clip_fraction"][0]) == 0.5
    g = jax.grad(lambda lp: f(lp)[0].sum())(logps)
    np.testing.assert_allclose(g, [[-0.75, -0.5]], rtol=1e-6)


def test_sapo_by_hand():
    """r = e^0.3: A = 1 uses tau_pos = 1: -4 s(r - 1); A = -1 uses tau_neg = 1.05:
    (4 / 1.05) s(1.05 (r - 1)). On-policy the gradient is the plain -A d logp."""
    logps, old, mask = jnp.array([[0.3], [0.3]]), jnp.zeros((2, 1)), jnp.ones((2, 1))
    loss, _ = losses.sapo_loss(
        logps, old, None, jnp.array([1.0, -1.0]), mask, aggregation="sequence_mean"
    )
    r = math.exp(0.3)
    np.testing.assert_allclose(loss, [-4 * sig(r - 1), 4 / 1.05 * sig(1.05 * (r - 1))], rtol=1e-6)
    g = jax.grad(
        lambda lp: losses.sapo_loss(
            lp, None, None, jnp.array([2.0, -1.0]), mask, aggregation="sequence_mean"
        )[0].sum()
    )(logps)
    np.testing.assert_allclose(g, [[-2.0], [1.0]], rtol=1e-6)


def test_rloo_is_sequence_level_reinforce_by_hand():
    """One ratio per sequence on the summed log-ratio (0.1 + 0.2): rho = e^0.3 > 1.2 with A = 2
    is clipped (loss -2.4); with A = -1 not (loss rho). On-policy the gradient is -A per token
    (sequence sum), where the per-token GRPO form gives -A / n."""
    logps, old, mask = (
        jnp.array([[0.1, 0.2, 9.0]] * 2),
        jnp.zeros((2, 3)),
        jnp.array([[1, 1, 0]] * 2),
    )
    loss, m = losses.rloo_loss(logps, old, jnp.array([2.0, -1.0]), mask)
    np.testing.assert_allclose(loss, [-2.4, math.exp(0.3)], rtol=1e-6)
    np.testing.assert_allclose(m["policy/clip_fraction"], [1.0, 0.0])
    a = jnp.array([1.5, -1.0])
    g = jax.grad(lambda lp: losses.rloo_loss(lp, None, a, mask)[0].sum())(logps)
    np.testing.assert_allclose(g, [[-1.5, -1.5, 0.0], [1.0, 1.0, 0.0]], rtol=1e-6)
    g_token = jax.grad(lambda lp: losses.grpo_loss(lp, None, None, a, mask, beta=0.0)[0].sum())(
        logps
    )
    np.testing.assert_allclose(g_token, [[-0.75, -0.75, 0.0], [0.5, 0.5, 0.0]], rtol=1e-6)


# Three sequences of two scored tokens: summed log-ratios 0.2, 0.4 and -0.3 to the old policy.
RLOO_LOGPS = jnp.array([[0.1, 0.1, 5.0], [0.3, 0.1, 5.0], [-0.1, -0.2, 5.0]])
RLOO_ADVANTAGES = jnp.array([2.0, 2.0, -1.0])
RLOO_MASK = jnp.array([[1, 1, 0]] * 3)


def _rloo_by_hand(eps_low, eps_high):
    """-min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) for each RLOO_* sequence."""
    out = []
    for log_ratio, a in zip((0.2, 0.4, -0.3), (2.0, 2.0, -1.0)):
        rho = math.exp(log_ratio)
        out.append(-min(rho * a, min(max(rho, 1 - eps_low), 1 + eps_high) * a))
    return out


def test_rloo_upper_clip_uses_clip_eps_high_by_hand():
    """rho = e^0.2 = 1.221 with A = 2 lies inside [0.8, 1.28]: unclipped, -2 e^0.2 = -2.443
    (the symmetric range would clip it to -2.4); rho = e^0.4 = 1.492 is clipped at 1 + 0.28:
    -2.56 (symmetric: -2.4); rho = e^-0.3 = 0.741 with A = -1 is clipped at 1 - 0.2: 0.8 (the
    lower bound stays clip_eps_low). Leaving clip_eps_high out keeps the symmetric range."""
    old = jnp.zeros((3, 3))
    loss, m = losses.rloo_loss(
        RLOO_LOGPS, old, RLOO_ADVANTAGES, RLOO_MASK, clip_eps_low=0.2, clip_eps_high=0.28
    )
    np.testing.assert_allclose(loss, [-2 * math.exp(0.2), -2.56, 0.8], rtol=1e-6)
    np.testing.assert_allclose(loss, _rloo_by_hand(0.2, 0.28), rtol=1e-6)
    np.testing.assert_array_equal(m["policy/clip_high_fraction"], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(m["policy/clip_low_fraction"], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(m["policy/clip_fraction"], [0.0, 1.0, 1.0])
    symmetric, _ = losses.rloo_loss(RLOO_LOGPS, old, RLOO_ADVANTAGES, RLOO_MASK)
    np.testing.assert_allclose(symmetric, [-2.4, -2.4, 0.8], rtol=1e-6)
    with pytest.raises(ValueError, match="rloo_loss: clip_eps_high must be > 0"):
        losses.rloo_loss(RLOO_LOGPS, None, RLOO_ADVANTAGES, RLOO_MASK, clip_eps_high=0.0)


@pytest.mark.parametrize("clip_eps_high, clipped_high", [(0.2, 2 / 3), (0.28, 1 / 3)])
def test_rloo_objective_passes_grpo_clip_eps_high(clip_eps_high, clipped_high):
    """The GRPO step's objective with baseline 'rloo' clips the sequence ratio to
    [1 - grpo.clip_eps_low, 1 + grpo.clip_eps_high] (a stand-in policy returns its params as the
    log-probs, so the minibatch loss is the mean of the hand values): e^0.2 is clipped at 1.2,
    not at 1.28."""
    from alignax import rl
    from alignax.rl.grpo import grpo_objective

    config = rl.GRPOConfig(baseline="rloo", clip_eps_low=0.2, clip_eps_high=clip_eps_high)
    response_fn = lambda params, tokens, input_mask, prompt_len: {"logps": params}
    loss_fn = grpo_objective(response_fn, config, max_new_tokens=3)
    minibatch = {
        "tokens": jnp.zeros((3, 5), jnp.int32),  # 2 prompt tokens, 3 response tokens
        "input_mask": jnp.ones((3, 5), jnp.int32),
        "mask": RLOO_MASK,
        "old_logps": jnp.zeros((3, 3)),
        "ref_logps": jnp.zeros((3, 3)),
        "advantages": RLOO_ADVANTAGES,
    }
    loss, metrics = loss_fn(RLOO_LOGPS, minibatch)
    np.testing.assert_allclose(loss, np.mean(_rloo_by_hand(0.2, clip_eps_high)), rtol=1e-6)
    assert float(metrics["policy/clip_high_fraction"]) == pytest.approx(clipped_high)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_new_group_losses_finite_at_log_ratios_of_1e4(dtype):
    """GSPO, CISPO, SAPO, RLOO (and GRPO's importance-weighted KL) have finite losses and
    gradients when log-ratios to the old policy and the reference are +-1e4."""
    with jax.enable_x64(dtype == "float64"):
        dt = jnp.dtype(dtype)
        logps = jnp.array([[-1e4, 0.0], [0.0, -1e-3], [-5.0, -1e4]], dt)
        old = jnp.array([[0.0, -1e4], [-1e4, 0.0], [-1e4, 0.0]], dt)
        ref = jnp.array([[0.0, 1e4], [-1e4, -1e4], [0.0, 0.0]], dt)
        a, mask = jnp.array([1.0, -1.0, 2.0], dt), jnp.ones((3, 2))
        fns = {
            "gspo": lambda lp: losses.gspo_loss(
                lp, old, ref, a, mask, beta=0.1, kl_importance_weighted=True
            ),
            "cispo": lambda lp: losses.cispo_loss(
                lp, old, ref, a, mask, beta=0.1, kl_importance_weighted=True
            ),
            "sapo": lambda lp: losses.sapo_loss(
                lp, old, ref, a, mask, beta=0.1, kl_importance_weighted=True
            ),
            "rloo": lambda lp: losses.rloo_loss(lp, old, a, mask),
        }
        for name, fn in fns.items():
            value, g = jax.value_and_grad(lambda lp, fn=fn: fn(lp)[0].sum())(logps)
            assert value.dtype == dt and np.isfinite(value), name
            assert np.all(np.isfinite(g)), name


def test_grpo_step_config_names_its_keys():
    """make_grpo_step rejects an unknown grpo.loss, and a per-token loss with the sequence-level
    RLOO baseline, naming the keys."""
    import ml_collections
    import optax

    from alignax import rl
    from tests.helpers import tiny_model

    def build(**grpo_overrides):
        config = ml_collections.ConfigDict({"grpo": rl.default_grpo_config()})
        config.grpo.update(**grpo_overrides)
        return rl.make_grpo_step(
            policy=tiny_model(),
            score_fn=None,
            tx=optax.sgd(1.0),
            config=rl.GRPOConfig.from_config(config.grpo),
            rollout_config=rl.RolloutConfig(group_size=2),
            eos_id=2,
        )

    with pytest.raises(ValueError, match=r"grpo\.loss='ppo'"):
        build(loss="ppo")
    with pytest.raises(ValueError, match=r"grpo\.baseline='rloo' is sequence-level"):
        build(baseline="rloo", loss="gspo")


@pytest.mark.parametrize(
    "baseline, loss, key",
    [
        ("rloo", "grpo", "policy/ratio"),
        ("grpo", "sapo", "policy/gate"),
        ("rloo_token", "gspo", "kl"),
        ("grpo", "cispo", "policy/clip_high_fraction"),
    ],
)
def test_grpo_step_traces_each_objective(baseline, loss, key):
    """make_grpo_step wires each (baseline, loss) choice through a whole iteration (traced
    abstractly, no compile): the metrics are those of the chosen loss."""
    policy, params = toy_policy()
    config = ml_collections.ConfigDict({"grpo": rl.default_grpo_config()})
    config.grpo.update(
        baseline=baseline,
        loss=loss,
        num_minibatches=1,
        scale_rewards="batch",
        kl_importance_weighted=True,
    )
    tx = optax.sgd(0.1)
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), ref_params=params)
    step = rl.make_grpo_step(
        policy=policy,
        score_fn=toy_score,
        tx=tx,
        config=rl.GRPOConfig.from_config(config.grpo),
        rollout_config=rl.RolloutConfig(max_new_tokens=3, group_size=2),
        eos_id=EOS,
    )
    _, metrics = jax.eval_shape(step, state, toy_prompts(2), jax.random.key(0))
    assert key in metrics
    if loss == "sapo":
        assert "policy/clip_fraction" not in metrics
