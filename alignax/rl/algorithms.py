"""The online algorithms a config names (`algorithm`), as the offline losses have a registry:
each with its config class (read from the config section of the same name), its step builder
and how its runs are labelled (the GRPO family by its baseline: grpo, rloo, ...).

    label, make_step = online_step(config.algorithm, config, policy=..., score_fn=...,
                                   rollout_config=..., eos_id=..., score_inputs=...)
    step = make_step(tx=tx, policy_view=None)   # the optimizer and LoRA view are the runner's

A new algorithm with the iteration's signature is one entry here; what it checks of its own
config (a group size, ...) lives in its config class. PPO, which also trains a critic, is built
by `make_ppo_step` directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections

from alignax.rl.grpo import GRPOConfig, make_grpo_step
from alignax.rl.nash_md import NashMDConfig, make_nash_md_step
from alignax.rl.xpo import XPOConfig, make_xpo_step


@dataclasses.dataclass(frozen=True)
class OnlineAlgorithm:
    config_class: Any  # has from_config(section) -> a frozen config
    make_step: Callable
    label: Callable[[Any], str]  # the run's name in logs and summaries, from its config


ONLINE_ALGORITHMS = {
    "grpo": OnlineAlgorithm(GRPOConfig, make_grpo_step, label=lambda c: c.baseline),
    "xpo": OnlineAlgorithm(XPOConfig, make_xpo_step, label=lambda c: "xpo"),
    "nash_md": OnlineAlgorithm(NashMDConfig, make_nash_md_step, label=lambda c: "nash_md"),
}


def online_step(
    algorithm: str, config: ml_collections.ConfigDict, **common
) -> tuple[str, Callable]:
    """(label, make_step) of the online algorithm `algorithm`, configured by
    `config[algorithm]`: `make_step(tx=..., policy_view=...)` builds its step with `common`, the
    step builder's other arguments. An unknown name is refused naming the config key and the
    registered ones."""
    if algorithm not in ONLINE_ALGORITHMS:
        raise ValueError(f"config algorithm={algorithm!r} is not one of {tuple(ONLINE_ALGORITHMS)}")
    entry = ONLINE_ALGORITHMS[algorithm]
    section = entry.config_class.from_config(config[algorithm])

    def make_step(**late):
        return entry.make_step(config=section, **common, **late)

    return entry.label(section), make_step
