"""Hyperparameter checks shared by every loss (no imports from the loss modules, so any loss
module and the registry can import them without a cycle).

Checks skip traced values, so hyperparameters can still be `vmap`ped (e.g. a sweep over beta).
"""

from __future__ import annotations

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


def require_choice(fn: str, name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{fn}: {name} must be one of {choices}, got {value!r}")


_POSITIVE = (
    "beta",
    "tau",
    "clip_eps",
    "clip_eps_low",
    "clip_eps_high",
    "value_clip_eps",
    "tau_positive",
    "tau_negative",
    "divergence_alpha",
)
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
    "gamma",
    "preference_weight",
    "quality_weight",
    "generation_weight",
)

# String-valued options: name -> allowed values.
NLL_REDUCTIONS = ("sequence", "token")
METRIC_AGGREGATIONS = ("sequence_mean", "token_mean")
# WPO's pair weight (alignax.losses.dpo_extensions.wpo_weights): capped at 1 (TRL <= 0.28) or
# not (>= 0.29).
WPO_WEIGHTINGS = ("clamped", "unclamped")
CHOICES = {
    "nll_reduction": NLL_REDUCTIONS,
    "metric_aggregation": METRIC_AGGREGATIONS,
    "weighting": WPO_WEIGHTINGS,
    "divergence": ("reverse_kl", "forward_kl", "js", "alpha"),
    "form": ("sigmoid", "hinge", "ipo", "simpo"),
}


def check_hyperparameters(fn: str, **hyperparameters) -> None:
    """Range checks by parameter name, shared by every loss (ValueError names `fn` and the key).

    beta, tau and clipping epsilons must be > 0; weights and coefficients >= 0; label_smoothing
    in [0, 0.5) (EXO: (0, 0.5), since it takes log(label_smoothing)); string options (e.g.
    nll_reduction) one of `CHOICES[name]`.
    """
    for name, value in hyperparameters.items():
        if name in _POSITIVE:
            require_positive(fn, name, value)
        elif name in _NON_NEGATIVE:
            require_non_negative(fn, name, value)
        elif name == "label_smoothing":
            require_label_smoothing(fn, value, allow_zero=fn != "exo_loss")
        elif name == "ld_alpha":
            if _concrete(value) and not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{fn}: ld_alpha must be in [0, 1], got {value}")
        elif name in CHOICES:
            require_choice(fn, name, value, CHOICES[name])
