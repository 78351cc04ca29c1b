"""Unpaired losses (alignax/losses/kto.py): APO-zero unpaired, BCO with its reward shift and
density-ratio weights, called through the registry; values by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignax.losses import kto, registry


def ls(x):  # log sigmoid
    return -math.log1p(math.exp(-x))


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


# u = policy - ref = [1, -2, 0.5]; labels desirable, undesirable, undesirable.
LOGPS = kto.UnpairedLogps(
    policy=jnp.array([-1.0, -4.0, -2.5]),
    ref=jnp.array([-2.0, -2.0, -3.0]),
    labels=jnp.array([1, 0, 0]),
    policy_kl=jnp.array([-1.0, -2.0, -2.0]),
    ref_kl=jnp.array([-1.0, -2.0, -2.0]),
    undesirable_weights=jnp.array([7.0, 2.0, 0.5]),
)


def test_apo_zero_unpaired_by_hand():
    """Desirable rows 1 - s(beta u), undesirable rows s(beta u) (beta = 0.5)."""
    loss, m = registry.get_unpaired_loss("apo_zero_unpaired")(LOGPS, beta=0.5)
    np.testing.assert_allclose(loss, [1 - sig(0.5), sig(-1.0), sig(0.25)], rtol=1e-6)
    np.testing.assert_allclose(m["rewards/chosen"], [0.5, 0.0, 0.0])


def test_bco_by_hand_with_shift_and_density_ratio():
    """BCO, beta = 0.5, delta = 0.1: desirable -log s(0.5 - 0.1); undesirable rows
    -w log s(0.1 - beta u) with their own weights w = 2, 0.5 (the desirable row's weight unused)."""
    loss, m = registry.get_unpaired_loss("bco")(LOGPS, beta=0.5, reward_shift=0.1)
    expected = [-ls(0.4), -2.0 * ls(0.1 + 1.0), -0.5 * ls(0.1 - 0.25)]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(m["rewards/mean"], (0.5 - 1.0 + 0.25) / 3, rtol=1e-6)
    # delta is a constant
    g = jax.grad(
        lambda d: kto.bco_loss(LOGPS.policy, LOGPS.ref, LOGPS.labels, beta=0.5, reward_shift=d)[
            0
        ].sum()
    )(0.1)
    assert float(g) == 0.0


def test_bco_density_ratio_by_hand():
    """w = clip(p / (1 - p), 0.5, 10): p = 0.8 -> 4, p = 0.99 -> 99 -> 10, p = 0.1 -> 1/9 -> 0.5."""
    w = kto.bco_density_ratio(jnp.array([0.8, 0.99, 0.1]))
    np.testing.assert_allclose(w, [4.0, 10.0, 0.5], rtol=1e-5)


def test_kto_through_the_registry_matches_the_primitive():
    """The registry passes the mismatched-pair log-probs ("kl" input) to KTO."""
    via, _ = registry.get_unpaired_loss("kto")(LOGPS, beta=0.5)
    direct, _ = kto.kto_loss(*LOGPS[:5], beta=0.5)
    np.testing.assert_array_equal(via, direct)
    with pytest.raises(ValueError, match="unpaired loss"):
        registry.get_preference_loss("kto")
