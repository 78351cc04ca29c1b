"""Nash-MD: the loss by hand, its per-token gradient, finite values at extreme log-probs, the
geometric-mixture sampler against the two models' own distributions, and online iterations that
raise a toy reward against the mixture."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alignax import rl, sharding
from alignax.losses import nash_md_loss
from alignax.sampling import geometric_mixture, sample
from alignax.state import TrainState
from tests.helpers import EOS, mesh_of, toy_policy, toy_prompts, toy_score


def test_nash_md_loss_by_hand():
    # Sequence 1: log-probs (-1, -2), reference (-1.5, -1), P = 0.8:
    #   KL term  0.5 * -1 + (-1) * -2 = 1.5; score (0.8 - 0.5) * -3 = -0.9
    #   loss = 0.2 * 1.5 - (-0.9) = 1.2
    # Sequence 2: one response token (the second is padding), log-prob -0.5, reference -0.25,
    #   P = 0.5: KL term -0.25 * -0.5 = 0.125, score 0; loss 0.2 * 0.125 = 0.025.
    loss, metrics = nash_md_loss(
        jnp.array([[-1.0, -2.0], [-0.5, -7.0]]),
        jnp.array([[-1.5, -1.0], [-0.25, -3.0]]),
        jnp.array([[1.0, 1.0], [1.0, 0.0]]),
        jnp.array([0.8, 0.5]),
        beta=0.2,
    )
    np.testing.assert_allclose(loss, [1.2, 0.025], rtol=1e-6)
    np.testing.assert_allclose(metrics["nash_md/score"], [-0.9, 0.0], rtol=1e-6)
    np.testing.assert_allclose(metrics["nash_md/kl"], [-0.5, -0.25], rtol=1e-6)


def test_per_token_gradient_is_the_kl_estimate_minus_the_centred_preference():
    rng = np.random.default_rng(0)
    logps, ref = (jnp.asarray(-rng.uniform(0.1, 4.0, size=(3, 5))) for _ in range(2))
    mask = jnp.asarray(rng.integers(0, 2, size=(3, 5)), jnp.float32)
    preference = jnp.array([0.9, 0.5, 0.1])
    grad = jax.grad(lambda lp: jnp.sum(nash_md_loss(lp, ref, mask, preference, beta=0.3)[0]))
    expected = (0.3 * (logps - ref) - (preference - 0.5)[:, None]) * mask
    np.testing.assert_allclose(grad(logps), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_finite_at_extreme_log_probs(dtype):
    with jax.enable_x64(dtype == jnp.float64):
        logps = jnp.array([[-1e4, -1e-4], [-1e-4, -1e4]], dtype)
        ref = jnp.array([[-1e-4, -1e4], [-1e4, -1e-4]], dtype)
        mask = jnp.ones((2, 2), dtype)
        preference = jnp.array([1.0, 0.0], dtype)

        def total(lp):
            return jnp.sum(nash_md_loss(lp, ref, mask, preference, beta=0.1)[0])

        assert np.isfinite(total(logps)) and np.all(np.isfinite(jax.grad(total)(logps)))


def test_mixture_sampler_draws_from_the_normalised_geometric_mean():
    policy, params = toy_policy()
    ref_params = policy.init(jax.random.key(1))
    prompts = toy_prompts(8)
    tokens, mask = jnp.asarray(prompts["prompt_tokens"]), jnp.asarray(prompts["prompt_mask"])

    def draw(coef=None, p=params, key=3):
        mixture = None if coef is None else (ref_params, coef)
        return sample(
            policy, p, tokens, mask, jax.random.key(key), max_new_tokens=4, eos_id=EOS,
            mixture=mixture,
        )  # fmt: skip

    # coef 0 is the policy, 1 the reference: the same tokens as sampling either alone.
    np.testing.assert_array_equal(draw(0.0).tokens, draw().tokens)
    np.testing.assert_array_equal(draw(1.0).tokens, draw(p=ref_params).tokens)
    # At coef 0.3 the log-prob of the first sampled token is the normalised geometric mean's.
    mixed = draw(0.3)
    logits = {
        name: policy.apply(p, tokens, mask, heads=("lm",))["logits"][:, -1]
        for name, p in (("policy", params), ("ref", ref_params))
    }
    expected = jax.nn.log_softmax(geometric_mixture(logits["policy"], logits["ref"], 0.3))
    first = tokens.shape[1]
    chosen = mixed.tokens[:, first]
    np.testing.assert_allclose(
        mixed.logps[:, first], expected[jnp.arange(8), chosen], rtol=1e-5, atol=1e-5
    )
    # ... and is not either model's own log-prob.
    for name in ("policy", "ref"):
        own = jax.nn.log_softmax(logits[name])[jnp.arange(8), chosen]
        assert np.max(np.abs(np.asarray(own) - np.asarray(mixed.logps[:, first]))) > 1e-3


def test_bad_nash_md_config_is_named():
    with pytest.raises(ValueError, match=r"nash_md\.mixture_coef=1\.5"):
        rl.NashMDConfig(mixture_coef=1.5)
    with pytest.raises(ValueError, match=r"nash_md\.beta=-1"):
        rl.NashMDConfig(beta=-1)
    with pytest.raises(ValueError, match=r"rollout\.group_size=2: Nash-MD pairs"):
        rl.make_nash_md_step(
            policy=toy_policy()[0],
            score_fn=toy_score,
            tx=optax.sgd(0.1),
            config=rl.NashMDConfig(),
            rollout_config=rl.RolloutConfig(group_size=2),
            eos_id=EOS,
        )


def test_nash_md_iterations_raise_the_reward_against_the_mixture():
    mesh = mesh_of((1, 1, 1), jax.devices()[:1])
    policy, params = toy_policy()
    tx = optax.adam(1e-2)
    state = TrainState.create(params, tx, mesh, ref_params=params)
    step = jax.jit(
        rl.make_nash_md_step(
            policy=policy,
            score_fn=toy_score,
            tx=tx,
            config=rl.NashMDConfig(beta=0.01, mixture_coef=0.5),
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
    assert np.mean(proxy[-3:]) > np.mean(proxy[:3]) + 0.1, proxy
    # The policy's responses come to be preferred to the mixture's, which improves less (it is
    # half the reference, which does not move).
    assert np.mean([m["nash_md/preference"] for m in history[-3:]]) > 0.5
    mixture = [m["proxy/mixture_mean"] for m in history]
    assert np.mean(proxy[-3:]) - np.mean(mixture[-3:]) > 0.05, (proxy, mixture)
    assert history[-1]["kl/sequence"] > 0
    jax.tree.map(np.testing.assert_array_equal, state.ref_params, params)
