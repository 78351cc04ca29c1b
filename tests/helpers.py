"""Shared test fixtures: a tiny model config and random padded batches."""

import jax.numpy as jnp
import numpy as np

from alignax.models import build_model, default_model_config


def tiny_config(**overrides):
    config = default_model_config()
    config.update(
        dict(
            vocab_size=32,
            d_model=32,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            mlp_dim=64,
            max_len=32,
        )
    )
    config.update(overrides)
    return config


def tiny_model(heads=("lm",), **overrides):
    return build_model(tiny_config(**overrides), heads=heads)


def pad_rows(rows, length, side="right", pad_id=0):
    """Pads lists of token ids to `length` on `side`; returns (tokens, input_mask) int32."""
    tokens = np.full((len(rows), length), pad_id, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        start = 0 if side == "right" else length - len(row)
        tokens[i, start : start + len(row)] = row
        mask[i, start : start + len(row)] = 1
    return jnp.asarray(tokens), jnp.asarray(mask)


def preset_config(module, preset="runlocal", **overrides):
    """`module.get_config(preset)` with dotted-key overrides ("train.steps": 5)."""
    config = module.get_config(preset).copy_and_resolve_references()
    with config.unlocked():
        for key, value in overrides.items():
            section, _, leaf = key.rpartition(".")
            node = config
            for part in section.split(".") if section else ():
                node = node[part]
            node[leaf] = value
    return config


def short_run(**extra):
    """Overrides for a short end-to-end run: log and checkpoint often, evaluate only at the end."""
    return {"train.log_every": 5, "train.eval_every": 1000, "train.checkpoint_every": 5, **extra}
