"""The vmapped reward-model sweep: members do not interact; swap flips labels; num_pairs
restricts the data."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from alignax.models import build_model, default_model_config
from alignax.sweeps import make_member_scorer, make_reward_model_sweep
from alignax.tasks import Annotator, get_task

N = 256


@pytest.fixture(scope="session")
def sweep():
    config = default_model_config()
    config.update(
        vocab_size=64,
        d_model=16,
        num_layers=1,
        num_heads=2,
        num_kv_heads=2,
        mlp_dim=32,
        max_len=48,
    )
    model = build_model(config, heads=("reward",))
    data = get_task("review").comparison_dataset(N, seed=0, annotator=Annotator("hard"))
    pairs = {k: jnp.asarray(data[k]) for k in ("tokens", "input_mask")}
    loss = ml_collections.ConfigDict(
        {"name": "bradley_terry", "center_coefficient": 0.0, "label_smoothing": 0.0}
    )
    train = make_reward_model_sweep(model, optax.adam(3e-3), loss, pairs, steps=150, batch_size=16)
    params = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 3))
    swap = jnp.zeros((3, N), bool).at[1].set(True)
    num_pairs = jnp.array([N, N, 1])
    rngs = jax.random.split(jax.random.key(1), 3)
    trained, losses = train(params, swap, num_pairs, rngs)
    return model, pairs, train, (params, swap, num_pairs, rngs), trained, losses


def test_members_do_not_interact(sweep):
    """Permuting the members permutes the results exactly: no member's data, gradient norm or
    optimizer state leaks into another's (what a separate run per member would give)."""
    _, _, train, inputs, trained, losses = sweep
    order = jnp.array([2, 0, 1])
    permuted, permuted_losses = train(*jax.tree.map(lambda x: x[order], inputs))
    np.testing.assert_allclose(permuted_losses, losses[order], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(permuted), jax.tree.leaves(trained)):
        np.testing.assert_allclose(a, b[order], rtol=1e-4, atol=1e-6)


def test_swapped_labels_learn_the_reverse_and_one_pair_memorises(sweep):
    model, pairs, _, _, trained, losses = sweep
    flat = {k: v.reshape(-1, v.shape[-1]) for k, v in pairs.items()}
    rewards = make_member_scorer(model)(trained, flat["tokens"], flat["input_mask"])
    rewards = np.asarray(rewards).reshape(3, N, 2)
    accuracy = (rewards[:, :, 0] > rewards[:, :, 1]).mean(1)
    assert accuracy[0] > 0.7 and accuracy[1] < 0.3
    # The member restricted to pair 0 drives that pair's loss to ~0 while others stay higher.
    assert float(losses[2, -10:].mean()) < 0.05 < float(losses[0, -10:].mean())


def test_bandit_sweep_reaches_the_kl_regularised_optimum_for_every_beta():
    """DPO on sampled Bradley-Terry pairs: every (beta, seed) run of one compiled sweep ends
    near pi_ref exp(r / beta) / Z, and a larger beta stays closer to the reference."""
    from alignax.losses import dpo_loss
    from alignax.sweeps import make_bandit_preference_sweep

    rewards = jnp.array([1.0, 0.5, 0.0, -0.5])
    ref_logps = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
    betas = jnp.array([0.5, 1.0, 2.0])
    sweep = make_bandit_preference_sweep(
        dpo_loss,
        rewards=rewards,
        ref_logps=ref_logps,
        steps=3000,
        batch_size=256,
        learning_rate=0.02,
    )
    logits = sweep(betas, jax.random.split(jax.random.key(0), 3))
    assert logits.shape == (3, 3, 4)
    policies = jax.nn.softmax(logits, axis=-1)
    for b, beta in enumerate(betas):
        optimum = jax.nn.softmax(ref_logps + rewards / beta)
        tv = 0.5 * np.abs(np.asarray(policies[b]) - np.asarray(optimum)).sum(-1)
        assert tv.max() < 0.02, (float(beta), tv)
    kl = (policies * (jnp.log(policies) - ref_logps)).sum(-1).mean(-1)
    assert kl[0] > kl[1] > kl[2] > 0


@pytest.mark.parametrize("count", [N + 1, 0])
def test_a_member_asking_for_pairs_that_are_not_there_is_refused(sweep, count):
    # Inside jit an index past the data is clamped: the member would train on the last pair.
    _, _, train, (params, swap, num_pairs, rngs), _, _ = sweep
    with pytest.raises(ValueError, match=rf"num_pairs \[{N}, {count}, 1\].*\[1, {N}\]"):
        train(params, swap, num_pairs.at[1].set(count), rngs)
