"""Registration of preference losses by decorator, with what each one needs from the trainer.

A loss module declares its losses where they are defined:

    @register("dpo", paper="Rafailov et al. 2023, DPO", reference=True)
    def dpo_loss(...): ...

and `alignax.losses.registry` (which imports the loss modules) serves them by name. This module
imports no loss module, so loss modules and the registry import it without a cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

LENGTHS = ("none", "chosen", "both")
KINDS = ("pairwise", "unpaired")


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """What a registered loss is and what the trainer must give it.

    Attributes:
      name: registry name (a config's `loss.name`).
      fn: the primitive loss function.
      paper: short citation.
      kind: "pairwise" (reads a `PreferenceLogps`) or "unpaired" (reads `UnpairedLogps`).
      reference: True when the loss reads reference log-probs (the trainer keeps a reference
        model and runs its forward pass); False for reference-free losses.
      lengths: which scored-token counts it reads: "none", "chosen" or "both".
      inputs: further optional `PreferenceLogps` fields it reads (e.g. "public", "wpo").
      aux: loop state the trainer keeps for it in `TrainState.aux` (e.g. "reward_shift"), or
        None.
    """

    name: str
    fn: Callable
    paper: str
    kind: str = "pairwise"
    reference: bool = True
    lengths: str = "none"
    inputs: tuple[str, ...] = ()
    aux: str | None = None


SPECS: dict[str, LossSpec] = {}


def register(
    name: str,
    *,
    paper: str,
    kind: str = "pairwise",
    reference: bool = True,
    lengths: str = "none",
    inputs: tuple[str, ...] = (),
    aux: str | None = None,
):
    """Decorator: registers the decorated loss under `name` with its declared needs."""
    if lengths not in LENGTHS:
        raise ValueError(f"register({name!r}): lengths must be one of {LENGTHS}, got {lengths!r}")
    if kind not in KINDS:
        raise ValueError(f"register({name!r}): kind must be one of {KINDS}, got {kind!r}")

    def decorate(fn: Callable) -> Callable:
        if name in SPECS:
            raise ValueError(f"register: loss {name!r} is already registered")
        SPECS[name] = LossSpec(name, fn, paper, kind, reference, lengths, tuple(inputs), aux)
        return fn

    return decorate
