"""XPO: the loss by hand, its limits (alpha = 0 is DPO; a tie has no DPO term), the exploration
gradient, and an online iteration that raises a toy reward while it explores."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from alignax import rl, sharding
from alignax.losses import xpo_loss
from alignax.losses.dpo import dpo_loss
from alignax.state import TrainState
from tests.helpers import EOS, mesh_of, toy_policy, toy_prompts, toy_score


def test_xpo_loss_by_hand():
    # Pair 1: chosen log-ratio 1 - 0.5 = 0.5, rejected -2 - (-1) = -1, margin 1.5.
    # Pair 2: a tie (preferred 0): only the exploration term.
    loss, metrics = xpo_loss(
        jnp.array([1.0, 3.0]),
        jnp.array([-2.0, 1.0]),
        jnp.array([0.5, 0.0]),
        jnp.array([-1.0, 0.0]),
        jnp.array([-4.0, -6.0]),
        jnp.array([1.0, 0.0]),
        beta=0.5,
        alpha=0.1,
    )
    expected_dpo = np.log1p(np.exp(-0.5 * 1.5))  # -log sigmoid(0.75)
    np.testing.assert_allclose(loss, [expected_dpo + 0.1 * -4.0, 0.1 * -6.0], rtol=1e-6)
    np.testing.assert_allclose(metrics["xpo/dpo_loss"], [expected_dpo, 0.0], rtol=1e-6)
    np.testing.assert_allclose(metrics["rewards/margin"][0], 0.75, rtol=1e-6)


def test_alpha_zero_is_dpo_and_the_exploration_gradient_is_alpha():
    rng = np.random.default_rng(0)
    pc, pr, rc, rr, po = (jnp.asarray(rng.normal(size=5) * 3) for _ in range(5))
    ones = jnp.ones(5)
    xpo, _ = xpo_loss(pc, pr, rc, rr, po, ones, beta=0.2, alpha=0.0)
    dpo, _ = dpo_loss(pc, pr, rc, rr, beta=0.2)
    np.testing.assert_allclose(xpo, dpo, rtol=1e-6)
    grad = jax.grad(lambda p: jnp.sum(xpo_loss(pc, pr, rc, rr, p, ones, beta=0.2, alpha=0.3)[0]))
    np.testing.assert_allclose(grad(po), 0.3 * ones, rtol=1e-6)


def test_bad_xpo_config_is_named():
    with pytest.raises(ValueError, match=r"xpo\.beta=0"):
        rl.XPOConfig(beta=0)
    with pytest.raises(ValueError, match=r"xpo\.alpha=-1"):
        rl.XPOConfig(alpha=-1)
    with pytest.raises(ValueError, match=r"rollout\.group_size=2: XPO pairs"):
        rl.make_xpo_step(
            policy=toy_policy()[0],
            score_fn=toy_score,
            tx=optax.sgd(0.1),
            config=rl.XPOConfig(),
            rollout_config=rl.RolloutConfig(group_size=2),
            eos_id=EOS,
        )


def test_xpo_iterations_raise_the_reward_against_the_reference():
    mesh = mesh_of((1, 1, 1), jax.devices()[:1])
    policy, params = toy_policy()
    config = ml_collections.ConfigDict({"xpo": rl.default_xpo_config()})
    config.xpo.update(beta=0.5, alpha=1e-3)
    tx = optax.adam(1e-2)
    state = TrainState.create(params, tx, mesh, ref_params=params)
    step = jax.jit(
        rl.make_xpo_step(
            policy=policy,
            score_fn=toy_score,
            tx=tx,
            config=rl.XPOConfig.from_config(config.xpo),
            rollout_config=rl.RolloutConfig(max_new_tokens=6),
            eos_id=EOS,
        )
    )
    batch = sharding.shard_batch(toy_prompts(32), mesh)
    history = []
    for _ in range(15):
        state, metrics = step(state, batch, jax.random.key(0))
        history.append(jax.device_get(metrics))
    proxy = [m["proxy/mean"] for m in history]
    # The policy's responses overtake the reference's, which stay at the start's level.
    assert np.mean(proxy[-3:]) > np.mean(proxy[:3]) + 0.1, proxy
    assert np.mean([m["xpo/policy_win_rate"] for m in history[-3:]]) > 0.5
    assert history[-1]["kl/sequence"] > 0
    reference = [m["proxy/reference_mean"] for m in history]
    assert abs(np.mean(reference[-3:]) - np.mean(reference[:3])) < 0.1
    jax.tree.map(np.testing.assert_array_equal, state.ref_params, params)
