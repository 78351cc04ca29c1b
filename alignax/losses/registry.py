"""The registry of preference losses: every loss registered with `@register` (alignax.losses.spec)
by name, with what it needs from the trainer.

A trainer computes the sequence log-probs once into a `PreferenceLogps` and calls any pairwise
member the same way:

    loss_fn = get_preference_loss(config.loss.name)      # e.g. "dpo", "ipo", "simpo"
    loss_B, metrics = loss_fn(logps, **config.loss.hyperparameters)

and reads `get_spec(name)` for what to compute: reference log-probs (`reference`), token counts
(`lengths`), extra per-sequence inputs (`inputs`) and loop state kept in `TrainState.aux` (`aux`).

    python -m alignax.losses.registry      # prints name | paper | needs reference | needs lengths

Hyperparameter range checks live in `alignax.losses.checks` (re-exported here).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

# Importing the loss modules registers their losses (FAMILIES below orders them).
from alignax.losses import dpo as _dpo
from alignax.losses import dpo_extensions as _dpo_extensions
from alignax.losses import kto as _kto
from alignax.losses import reference_free as _reference_free
from alignax.losses import regression as _regression
from alignax.losses.checks import (  # noqa: F401  (re-exported)
    check_hyperparameters,
    require_label_smoothing,
    require_non_negative,
    require_positive,
)
from alignax.losses.spec import SPECS, LossSpec

# The registry's order: by family, as the README's table lists them (whatever order the
# modules were imported in), then as each module defines its losses.
FAMILIES = (_dpo, _regression, _reference_free, _dpo_extensions, _kto)
_FAMILY_INDEX = {family.__name__: i for i, family in enumerate(FAMILIES)}
ORDERED_SPECS = dict(
    sorted(SPECS.items(), key=lambda item: _FAMILY_INDEX[item[1].fn.__module__])  # stable
)


def registered(kind: str) -> tuple[str, ...]:
    """The registered losses of `kind` ("pairwise" | "unpaired"): the families' in their order,
    then any registered since (a loss defined in a user's module, imported before its config is
    built)."""
    names = (*ORDERED_SPECS, *(n for n in SPECS if n not in ORDERED_SPECS))
    return tuple(n for n in names if SPECS[n].kind == kind)


# The built-in losses (the README's table).
PREFERENCE_LOSSES = registered("pairwise")
UNPAIRED_LOSSES = registered("unpaired")

# Losses that never read the reference log-probs: the trainer skips the reference forward and
# keeps no reference weights.
REFERENCE_FREE_LOSSES = tuple(name for name in PREFERENCE_LOSSES if not SPECS[name].reference)

# Keyword arguments a trainer supplies (not hyperparameters a config sets).
_INPUT_FIELDS = {
    "public": (
        "policy_chosen_public",
        "policy_rejected_public",
        "ref_chosen_public",
        "ref_rejected_public",
    ),
    "wpo": ("chosen_wpo_logps", "rejected_wpo_logps"),
    "kl": ("policy_kl_logps", "ref_kl_logps"),
    "density_ratio": ("undesirable_weights",),
}
_LENGTH_FIELDS = {
    "none": (),
    "chosen": ("chosen_lengths",),
    "both": ("chosen_lengths", "rejected_lengths"),
}


def get_spec(name: str) -> LossSpec:
    """The `LossSpec` of loss `name` (pairwise or unpaired).

    Raises:
      ValueError: for an unknown name; the message lists the known ones.
    """
    if name not in SPECS:
        raise ValueError(
            f"unknown preference loss {name!r}; known losses: {', '.join(registered('pairwise'))}; "
            f"unpaired: {', '.join(registered('unpaired'))}"
        )
    return SPECS[name]


def _trainer_inputs(spec: LossSpec) -> tuple[str, ...]:
    names = _LENGTH_FIELDS[spec.lengths]
    for group in spec.inputs:
        names += _INPUT_FIELDS[group]
    if spec.aux is not None:
        names += (spec.aux,)
    if spec.name == "cpo":  # rejected_lengths is optional there (only its ipo/simpo forms)
        names += ("rejected_lengths",)
    return names


def get_preference_loss(name: str) -> Callable:
    """The pairwise loss `name` as `fn(logps: PreferenceLogps, **hp) -> (loss_B, metrics)`.

    Every family member is called the same way; each reads the fields of `PreferenceLogps` its
    spec declares (reference log-probs, token counts, extra inputs). Loop state (`spec.aux`, e.g.
    BCO's `reward_shift`) is passed as a keyword by the trainer.

    Raises:
      ValueError: for an unknown name or an unpaired loss; the message lists the known ones.
    """
    spec = get_spec(name)
    if spec.kind != "pairwise":
        raise ValueError(
            f"{name!r} is an unpaired loss; pairwise: {', '.join(registered('pairwise'))}"
        )

    def loss_fn(logps, **hyperparameters):
        args = (logps.policy_chosen, logps.policy_rejected)
        if spec.reference:
            args += (logps.ref_chosen, logps.ref_rejected)
        fields = _LENGTH_FIELDS[spec.lengths]
        for group in spec.inputs:
            fields += _INPUT_FIELDS[group]
        inputs = {k: getattr(logps, k) for k in fields}
        return spec.fn(*args, **inputs, **hyperparameters)

    loss_fn.__name__ = f"{name}_preference_loss"
    loss_fn.__doc__ = spec.fn.__doc__
    return loss_fn


def get_unpaired_loss(name: str) -> Callable:
    """The unpaired loss `name` as `fn(logps: UnpairedLogps, **hp) -> (loss_B, metrics)`.

    Raises:
      ValueError: for an unknown name or a pairwise loss.
    """
    spec = get_spec(name)
    if spec.kind != "unpaired":
        raise ValueError(
            f"{name!r} is a pairwise loss; unpaired: {', '.join(registered('unpaired'))}"
        )

    def loss_fn(logps, **hyperparameters):
        args = (logps.policy, logps.ref, logps.labels)
        if "kl" in spec.inputs:
            args += (logps.policy_kl, logps.ref_kl)
        if "density_ratio" in spec.inputs:
            hyperparameters = {"undesirable_weights": logps.undesirable_weights, **hyperparameters}
        return spec.fn(*args, **hyperparameters)

    loss_fn.__name__ = f"{name}_unpaired_loss"
    loss_fn.__doc__ = spec.fn.__doc__
    return loss_fn


def _keyword_parameters(spec: LossSpec) -> dict[str, inspect.Parameter]:
    parameters = inspect.signature(spec.fn).parameters
    supplied = set(_trainer_inputs(spec))
    return {k: p for k, p in parameters.items() if p.kind is p.KEYWORD_ONLY and k not in supplied}


def validate_hyperparameters(name: str, **hyperparameters) -> None:
    """Checks hyperparameters for loss `name` eagerly (e.g. at config time) without running it.

    Raises ValueError naming the loss and the parameter for an unknown loss, a missing required
    hyperparameter (e.g. beta), an unknown hyperparameter (including inputs the trainer supplies,
    such as lengths or BCO's reward_shift), or a value out of range.
    """
    spec = get_spec(name)
    parameters = _keyword_parameters(spec)
    unknown = set(hyperparameters) - set(parameters)
    if unknown:
        raise ValueError(
            f"{name}: unknown hyperparameters {sorted(unknown)}; allowed: {sorted(parameters)}"
        )
    for k, p in sorted(parameters.items()):
        if p.default is inspect.Parameter.empty and k not in hyperparameters:
            raise ValueError(f"{name}: missing required hyperparameter {k!r}")
    check_hyperparameters(spec.fn.__name__, **hyperparameters)


def default_hyperparameters(name: str, **overrides) -> dict:
    """The keyword hyperparameters of loss `name` with their defaults, updated by `overrides`
    (required ones, like beta, must be given): what a config declares for that loss."""
    defaults = {
        k: p.default
        for k, p in _keyword_parameters(get_spec(name)).items()
        if p.default is not inspect.Parameter.empty
    }
    hyperparameters = {**defaults, **overrides}
    validate_hyperparameters(name, **hyperparameters)
    return hyperparameters


def weighted_preference_loss(
    components: Sequence[tuple[str, float, dict]],
) -> tuple[Callable, LossSpec]:
    """A weighted sum of registered pairwise losses (the MPO recipe generalised).

        loss = sum_k w_k loss_k(logps, **hp_k)

    Args:
      components: (name, weight, hyperparameters) triples, e.g.
        [("dpo", 0.8, {"beta": 0.1}), ("bco_pair", 0.2, {"beta": 0.1}), ("sft", 1.0, {})].

    Returns:
      (loss_fn(logps, **trainer_inputs) -> (loss_B, metrics), spec) where the spec's needs are
      the union of the components' (so the trainer computes what any of them reads). Metrics are
      the first component's, plus `loss/<name>` for each component.
    """
    if not components:
        raise ValueError("weighted_preference_loss: components is empty")
    specs = []
    for name, weight, hp in components:
        validate_hyperparameters(name, **hp)
        if float(weight) < 0:
            raise ValueError(f"weighted_preference_loss: weight of {name!r} must be >= 0")
        specs.append(get_spec(name))
    fns = [(get_preference_loss(n), w, dict(hp), s) for (n, w, hp), s in zip(components, specs)]

    def loss_fn(logps, **trainer_inputs):
        total, metrics = 0.0, {}
        for fn, weight, hp, spec in fns:
            extra = {k: v for k, v in trainer_inputs.items() if k == spec.aux}
            loss_B, component = fn(logps, **hp, **extra)
            total = total + weight * loss_B
            metrics = metrics or dict(component)
            metrics[f"loss/{spec.name}"] = loss_B
        return total, metrics

    lengths = max((s.lengths for s in specs), key=("none", "chosen", "both").index)
    auxes = {s.aux for s in specs} - {None}
    if len(auxes) > 1:
        raise ValueError(f"weighted_preference_loss: components need different aux {auxes}")
    spec = LossSpec(
        name="+".join(n for n, _, _ in components),
        fn=loss_fn,
        paper="weighted sum",
        reference=any(s.reference for s in specs),
        lengths=lengths,
        inputs=tuple(dict.fromkeys(g for s in specs for g in s.inputs)),
        aux=auxes.pop() if auxes else None,
    )
    return loss_fn, spec


def table() -> str:
    """The registry as a Markdown table: name | kind | paper | needs reference | needs lengths |
    other inputs."""
    rows = [
        "| name | kind | paper | needs reference | needs lengths | other inputs |",
        "|---|---|---|---|---|---|",
    ]
    for name, spec in ORDERED_SPECS.items():
        other = ", ".join(spec.inputs + ((f"aux:{spec.aux}",) if spec.aux else ())) or "-"
        rows.append(
            f"| {name} | {spec.kind} | {spec.paper} | {'yes' if spec.reference else 'no'} | "
            f"{spec.lengths if spec.lengths != 'none' else 'no'} | {other} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
