"""Config sections read into frozen dataclasses (`ModelConfig`, `PPOConfig`, `GRPOConfig`): the
dataclass declares every key with its default, and a wrong key or value is refused by its full
dotted name (`ppo.kl_coef`) before anything is built."""

from __future__ import annotations

import dataclasses

import ml_collections


def check_keys(cls, config: ml_collections.ConfigDict, prefix: str) -> None:
    """Refuses keys of `config` that `cls` lacks, and fields of `cls` that `config` lacks."""
    fields = {f.name for f in dataclasses.fields(cls)}
    given = set(config.keys())
    if unknown := sorted(given - fields):
        raise ValueError(
            f"Unknown config key(s) {', '.join(f'{prefix}.{k}' for k in unknown)}; "
            f"known keys: {', '.join(sorted(fields))}"
        )
    if missing := sorted(fields - given):
        raise ValueError(f"Missing config key(s): {', '.join(f'{prefix}.{k}' for k in missing)}")


def check_choice(prefix: str, key: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{prefix}.{key}={value!r} is not one of {allowed}")


def frozen(cls, config: ml_collections.ConfigDict, prefix: str):
    """`cls(**config)` after `check_keys`; the dataclass's `__post_init__` checks the values."""
    check_keys(cls, config, prefix)
    return cls(**dict(config.items()))


def section(instance) -> ml_collections.ConfigDict:
    """The ConfigDict section (every key at the instance's value) of a config dataclass."""
    return ml_collections.ConfigDict(dataclasses.asdict(instance))
