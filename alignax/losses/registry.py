"""Hyperparameter checks shared by the losses, and the registry of offline pairwise losses.

A trainer computes the sequence log-probs once into a `PreferenceLogps` and calls any family
member the same way:

    loss_fn = get_preference_loss(config.loss)          # e.g. "dpo", "ipo", "simpo"
    loss_B, metrics = loss_fn(logps, **config.loss_hyperparameters)

Checks skip traced values, so hyperparameters can still be `vmap`ped (e.g. a sweep over beta).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import jax


def _concrete(value) -> bool:
    return not isinstance(value, jax.core.Tracer) and value is not None


def require_positive(fn: str, name: str, value) -> None:
    """Raises ValueError if a concrete `value` is not > 0."""
    if _concrete(value) and not float(value) > 0:
        raise ValueError(f"{fn}: {name} must be > 0, got {value}")


def require_non_negative(fn: str, name: str, value) -> None:
    if _concrete(value) and not float(value) >= 0:
        raise ValueError(f"{fn}: {name} must be >= 0, got {value}")


def require_label_smoothing(fn: str, value, *, allow_zero: bool = True) -> None:
    """Label smoothing must be in [0, 0.5) (or (0, 0.5) where log(eps) appears)."""
    if not _concrete(value):
        return
    low_ok = float(value) >= 0 if allow_zero else float(value) > 0
    if not (low_ok and float(value) < 0.5):
        interval = "[0, 0.5)" if allow_zero else "(0, 0.5)"
        raise ValueError(f"{fn}: label_smoothing must be in {interval}, got {value}")


_POSITIVE = ("beta", "tau", "clip_eps", "clip_eps_low", "clip_eps_high", "value_clip_eps")
_NON_NEGATIVE = (
    "alpha",
    "center_coefficient",
    "desirable_weight",
    "undesirable_weight",
    "ptx_coef",
    "value_coef",
    "entropy_coef",
    "kl_coef",
    "uncertainty_penalty",
)


def check_hyperparameters(fn: str, **hyperparameters) -> None:
    """Range checks by parameter name, shared by every loss (ValueError names `fn` and the key).

    beta, tau and clipping epsilons must be > 0; weights and coefficients >= 0; label_smoothing
    in [0, 0.5) (EXO: (0, 0.5), since it takes log(label_smoothing)).
    """
    for name, value in hyperparameters.items():
        if name in _POSITIVE:
            require_positive(fn, name, value)
        elif name in _NON_NEGATIVE:
            require_non_negative(fn, name, value)
        elif name == "label_smoothing":
            require_label_smoothing(fn, value, allow_zero=fn != "exo_loss")


# name -> (function in alignax.losses.dpo, which inputs of PreferenceLogps it reads)
_LOSSES = {
    "dpo": ("dpo_loss", "refs"),
    "robust_dpo": ("robust_dpo_loss", "refs"),
    "hinge": ("hinge_loss", "refs"),
    "ipo": ("ipo_loss", "refs"),
    "exo": ("exo_loss", "refs"),
    "nca": ("nca_loss", "refs"),
    "bco_pair": ("bco_pair_loss", "refs"),
    "sppo_hard": ("sppo_hard_loss", "refs"),
    "aot": ("aot_loss", "refs"),
    "aot_unpaired": ("aot_unpaired_loss", "refs"),
    "apo_zero": ("apo_zero_loss", "refs"),
    "apo_down": ("apo_down_loss", "refs"),
    "discopop": ("discopop_loss", "refs"),
    "dpo_length_normalized": ("length_normalized_dpo_loss", "refs+lengths"),
    "rpo": ("rpo_loss", "refs+chosen_lengths"),
    "dpo_reference_free": ("reference_free_dpo_loss", "policy"),
    "simpo": ("simpo_loss", "policy+lengths"),
    "cpo": ("cpo_loss", "policy+chosen_lengths"),
    "orpo": ("orpo_loss", "policy+lengths"),
}

PREFERENCE_LOSSES = tuple(_LOSSES)

# Losses that never read the reference log-probs: the trainer can skip the reference forward.
REFERENCE_FREE_LOSSES = tuple(
    name for name, (_, inputs) in _LOSSES.items() if inputs.startswith("policy")
)


def _lookup(name: str) -> tuple[Callable, str]:
    if name not in _LOSSES:
        raise ValueError(
            f"unknown preference loss {name!r}; known losses: {', '.join(PREFERENCE_LOSSES)}"
        )
    # Imported here because the loss modules import the checks above.
    from alignax.losses import dpo

    fn_name, inputs = _LOSSES[name]
    return getattr(dpo, fn_name), inputs


def get_preference_loss(name: str) -> Callable:
    """The pairwise loss `name` as `fn(logps: PreferenceLogps, **hp) -> (loss_B, metrics)`.

    Every family member is called the same way; each reads the fields of `PreferenceLogps` it
    needs (reference log-probs, token counts).

    Raises:
      ValueError: for an unknown name; the message lists `PREFERENCE_LOSSES`.
    """
    fn, inputs = _lookup(name)

    def loss_fn(logps, **hyperparameters):
        args = (logps.policy_chosen, logps.policy_rejected)
        if inputs.startswith("refs"):
            args += (logps.ref_chosen, logps.ref_rejected)
        lengths = {}
        if inputs.endswith("lengths"):
            lengths["chosen_lengths"] = logps.chosen_lengths
        if inputs.endswith("+lengths"):
            lengths["rejected_lengths"] = logps.rejected_lengths
        return fn(*args, **lengths, **hyperparameters)

    loss_fn.__name__ = f"{name}_preference_loss"
    loss_fn.__doc__ = fn.__doc__
    return loss_fn


def validate_hyperparameters(name: str, **hyperparameters) -> None:
    """Checks hyperparameters for loss `name` eagerly (e.g. at config time) without running it.

    Raises ValueError naming the loss and the parameter for an unknown loss, a missing required
    hyperparameter (e.g. beta), an unknown hyperparameter, or a value out of range.
    """
    fn, _ = _lookup(name)
    parameters = inspect.signature(fn).parameters
    allowed = {
        k
        for k, p in parameters.items()
        if p.kind is p.KEYWORD_ONLY and k not in ("chosen_lengths", "rejected_lengths")
    }
    unknown = set(hyperparameters) - allowed
    if unknown:
        raise ValueError(
            f"{name}: unknown hyperparameters {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    for k in sorted(allowed):
        if parameters[k].default is inspect.Parameter.empty and k not in hyperparameters:
            raise ValueError(f"{name}: missing required hyperparameter {k!r}")
    check_hyperparameters(fn.__name__, **hyperparameters)


def default_hyperparameters(name: str, **overrides) -> dict:
    """The keyword hyperparameters of loss `name` with their defaults, updated by `overrides`
    (required ones, like beta, must be given): what a config declares for that loss."""
    fn, _ = _lookup(name)
    parameters = inspect.signature(fn).parameters
    defaults = {
        k: p.default
        for k, p in parameters.items()
        if p.kind is p.KEYWORD_ONLY
        and k not in ("chosen_lengths", "rejected_lengths")
        and p.default is not inspect.Parameter.empty
    }
    hyperparameters = {**defaults, **overrides}
    validate_hyperparameters(name, **hyperparameters)
    return hyperparameters
