"""KL coefficient controllers for RLHF (Ziegler et al. 2019, "Fine-Tuning Language Models from
Human Preferences", section 2.2).

Optax-style and pure: a controller is a pair of functions `init() -> state` and
`update(state, observed_kl, n_steps) -> state`; the state is a NamedTuple pytree, so it lives in
the train state, goes through `jit`/`lax.scan`, and is checkpointed with everything else.

Example:
  >>> controller = adaptive_kl_controller(0.1, target=6.0, horizon=10_000)
  >>> state = controller.init()
  >>> state = controller.update(state, observed_kl=12.0, n_steps=256)  # KL too high: beta grows
  >>> round(float(state.kl_coef), 7)  # 0.1 * (1 + 0.2 * 256 / 10000), to float32's precision
  0.100512
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class KLControllerState(NamedTuple):
    kl_coef: jax.Array  # scalar float32, the current beta


class KLController(NamedTuple):
    init: Callable[[], KLControllerState]
    update: Callable[[KLControllerState, jax.Array, jax.Array], KLControllerState]


def _check_coef(kl_coef: float, fn: str) -> None:
    if isinstance(kl_coef, (int, float)) and kl_coef < 0:
        raise ValueError(f"{fn}: kl_coef must be >= 0, got {kl_coef}")


def fixed_kl_controller(kl_coef: float) -> KLController:
    """A constant KL coefficient; `update` returns the state unchanged."""
    _check_coef(kl_coef, "fixed_kl_controller")

    def init() -> KLControllerState:
        return KLControllerState(jnp.asarray(kl_coef, jnp.float32))

    def update(state, observed_kl, n_steps):
        del observed_kl, n_steps
        return state

    return KLController(init, update)


def adaptive_kl_controller(
    init_kl_coef: float, *, target: float, horizon: float, clip: float = 0.2
) -> KLController:
    """Proportional controller that steers the observed KL towards `target` (Ziegler et al. 2019).

        e     = clip(KL_observed / target - 1, -clip, clip)
        beta <- beta * (1 + e * n_steps / horizon)

    Args:
      init_kl_coef: initial beta (> 0; a zero beta would stay zero).
      target: desired KL(pi || pi_ref) per sequence (> 0).
      horizon: number of samples over which the error is corrected (> 0). Per update, log beta
        moves by at most clip * n_steps / horizon, so over a run of N samples beta can change by
        at most a factor exp(clip * N / horizon): a horizon that is long against the run leaves
        the KL wherever the initial beta puts it (choose N / horizon >= ~10).
      clip: bound on the proportional error (0.2 in the paper).
      n_steps (update argument): samples seen since the last update (e.g. the batch size).
    """
    for name, value in (
        ("init_kl_coef", init_kl_coef),
        ("target", target),
        ("horizon", horizon),
        ("clip", clip),
    ):
        if isinstance(value, (int, float)) and value <= 0:
            raise ValueError(f"adaptive_kl_controller: {name} must be > 0, got {value}")

    def init() -> KLControllerState:
        return KLControllerState(jnp.asarray(init_kl_coef, jnp.float32))

    def update(state, observed_kl, n_steps):
        error = jnp.clip(jnp.asarray(observed_kl, jnp.float32) / target - 1.0, -clip, clip)
        factor = 1.0 + error * jnp.asarray(n_steps, jnp.float32) / horizon
        return KLControllerState(state.kl_coef * factor)

    return KLController(init, update)


def make_kl_controller(
    kind: str, *, kl_coef: float, target: float | None = None, horizon: float | None = None
) -> KLController:
    """Controller from config values: kind "fixed" or "adaptive" (which needs target, horizon)."""
    if kind == "fixed":
        return fixed_kl_controller(kl_coef)
    if kind == "adaptive":
        if target is None or horizon is None:
            raise ValueError("make_kl_controller: kind='adaptive' needs target and horizon")
        return adaptive_kl_controller(kl_coef, target=target, horizon=horizon)
    raise ValueError(f"make_kl_controller: kind must be 'fixed' or 'adaptive', got {kind!r}")
