"""alignax.rl.kl_control: fixed and adaptive KL controllers are pure, jittable, and follow
Ziegler et al. 2019."""

import jax
import jax.numpy as jnp
import pytest

from alignax.rl import kl_control


def test_fixed_controller_never_changes():
    """The fixed controller returns its coefficient whatever the observed KL."""
    c = kl_control.fixed_kl_controller(0.05)
    s = c.init()
    s = c.update(s, 100.0, 512)
    assert float(s.kl_coef) == pytest.approx(0.05)


def test_adaptive_controller_update_rule():
    """beta <- beta (1 + clip(KL / target - 1, -0.2, 0.2) n / horizon), by hand."""
    c = kl_control.adaptive_kl_controller(0.1, target=6.0, horizon=1000.0)
    s = c.init()
    s1 = c.update(s, 7.2, 100)  # error 0.2 -> factor 1.02
    assert float(s1.kl_coef) == pytest.approx(0.1 * 1.02, rel=1e-6)
    s2 = c.update(s, 3.0, 100)  # error -0.5 clipped to -0.2 -> 0.98
    assert float(s2.kl_coef) == pytest.approx(0.1 * 0.98, rel=1e-6)
    s3 = c.update(s, 6.0, 100)  # on target: unchanged
    assert float(s3.kl_coef) == pytest.approx(0.1, rel=1e-6)


def test_adaptive_controller_is_jittable_and_scans():
    """The update jits and runs under lax.scan; a KL persistently above target raises beta."""
    c = kl_control.adaptive_kl_controller(0.1, target=1.0, horizon=100.0)

    def step(state, kl):
        state = c.update(state, kl, 10)
        return state, state.kl_coef

    final, trace = jax.jit(lambda s: jax.lax.scan(step, s, jnp.full(5, 10.0)))(c.init())
    assert float(final.kl_coef) == pytest.approx(0.1 * 1.02**5, rel=1e-5)
    assert bool(jnp.all(jnp.diff(trace) > 0))


def test_controller_arguments_are_checked():
    """Bad controller settings raise ValueError naming the argument."""
    with pytest.raises(ValueError, match="target must be > 0"):
        kl_control.adaptive_kl_controller(0.1, target=0.0, horizon=10.0)
    with pytest.raises(ValueError, match="kl_coef must be >= 0"):
        kl_control.fixed_kl_controller(-1.0)
    with pytest.raises(ValueError, match="'fixed' or 'adaptive'"):
        kl_control.make_kl_controller("pid", kl_coef=0.1)
    assert float(
        kl_control.make_kl_controller("adaptive", kl_coef=0.2, target=6, horizon=10).init().kl_coef
    ) == pytest.approx(0.2)
