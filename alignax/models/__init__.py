"""Functional view of the Flax NNX transformer: static `Model`, params as plain nested dicts.

    model = build_model(config.model, heads=("lm",))
    params = model.init(jax.random.key(0))
    logits_BxLxV = model.apply(params, tokens_BxL, input_mask_BxL)["logits"]

The NNX module is split once into (graphdef, params); every forward merges them inside the caller's
jit, so losses and steps are pure functions of params pytrees.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from alignax.models.config import ModelConfig, default_model_config
from alignax.models.transformer import CACHE_AXES, Transformer

HEADS = ("lm", "reward", "value")
HEAD_PARAMS = ("lm_head", "reward_head", "reward_bias", "value_head", "value_bias")

Params = dict[str, Any]


def positions_from_mask(input_mask_BxL: jax.Array) -> jax.Array:
    """Token positions that ignore padding on either side: cumsum(mask) - 1, clipped at 0."""
    return jnp.maximum(jnp.cumsum(input_mask_BxL.astype(jnp.int32), axis=1) - 1, 0)


def positions_from_segments(segment_ids_BxL: jax.Array) -> jax.Array:
    """Positions of packed rows: 0, 1, ... restarting where the segment id changes."""
    index_BxL = jnp.broadcast_to(jnp.arange(segment_ids_BxL.shape[1]), segment_ids_BxL.shape)
    previous_BxL = jnp.pad(segment_ids_BxL[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
    starts_BxL = jnp.where(segment_ids_BxL != previous_BxL, index_BxL, 0)
    return index_BxL - jax.lax.cummax(starts_BxL, axis=1)


def segment_key_mask(segment_ids_BxL: jax.Array) -> jax.Array:
    """[B, L, L]: query t may see key s of the same (non-padding) segment."""
    same_BxLxL = segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
    return (same_BxLxL & (segment_ids_BxL[:, None, :] > 0)).astype(jnp.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """Static description of a model: config, heads, NNX graph and abstract params."""

    config: ModelConfig
    heads: tuple[str, ...]
    graphdef: Any
    abstract_params: Params  # ShapeDtypeStructs
    logical_axes: Params  # PartitionSpecs of logical axis names, same tree as params

    def init(self, rng: jax.Array) -> Params:
        """Freshly initialised params (wrap in jit with out_shardings to create them sharded)."""
        module = Transformer(self.config, self.heads, rngs=nnx.Rngs(params=rng))
        return nnx.to_pure_dict(nnx.split(module)[1])

    def _module(self, params: Params) -> Transformer:
        return nnx.merge(self.graphdef, params)

    def apply(
        self,
        params: Params,
        tokens_BxL: jax.Array,
        input_mask_BxL: jax.Array,
        *,
        heads: Sequence[str] | None = None,
        dropout_rng: jax.Array | None = None,
        segment_ids_BxL: jax.Array | None = None,
        logits_at_BxW: jax.Array | None = None,
    ) -> dict[str, jax.Array]:
        """Full-sequence forward. Returns the requested heads' outputs.

        Keys: 'logits' [B, L, V] float32 (logits[:, t] predicts tokens[:, t+1]), 'rewards' [B]
        (read at the last real token), 'values' [B, L], 'hidden' [B, L, D] always.
        `segment_ids_BxL` (packed rows, `alignax.data.batching.pack_sequences`; LM head only):
        each segment is attended to and positioned as a sequence of its own.
        `logits_at_BxW` (positions of each row, `logprobs.scored_window`): the LM head runs only
        there, and 'logits' is [B, W, V] (logits[:, w] predicts tokens[:, logits_at[:, w] + 1]).
        """
        heads = self.heads if heads is None else tuple(heads)
        if missing := [h for h in heads if h not in self.heads]:
            raise ValueError(f"model has heads {self.heads}, asked for {missing}")
        if tokens_BxL.shape[1] > self.config.max_len:
            raise ValueError(
                f"sequence length {tokens_BxL.shape[1]} exceeds model.max_len={self.config.max_len}"
            )
        module = self._module(params)
        input_mask_BxL = input_mask_BxL.astype(jnp.int32)
        if segment_ids_BxL is None:
            positions_BxL, key_mask = positions_from_mask(input_mask_BxL), input_mask_BxL
        else:
            if set(heads) - {"lm"}:
                raise ValueError(f"packed rows (segment_ids) feed the LM head only, not {heads}")
            positions_BxL = positions_from_segments(segment_ids_BxL)
            key_mask = segment_key_mask(segment_ids_BxL)
        hidden, _ = module.backbone(tokens_BxL, positions_BxL, key_mask, dropout_key=dropout_rng)
        out = {"hidden": hidden}
        if "lm" in heads:
            at = hidden
            if logits_at_BxW is not None:
                at = jnp.take_along_axis(hidden, logits_at_BxW[..., None], axis=1)
            out["logits"] = module.lm_logits(at)
        if "reward" in heads:
            out["rewards"] = module.reward(hidden, input_mask_BxL)
        if "value" in heads:
            out["values"] = module.value(hidden)
        return out

    def init_cache(self, batch_size: int, length: int) -> dict[str, jax.Array]:
        """Empty KV cache of `length` slots: k [layers, B, kv_heads, length, head_dim] and
        v [layers, B, kv_heads, head_dim, length] (`CACHE_AXES`)."""
        c = self.config
        if length > c.max_len:
            raise ValueError(f"cache length {length} exceeds model.max_len={c.max_len}")
        sizes = {"b": batch_size, "k": c.num_kv_heads, "s": length, "d": c.head_dim}
        return {
            name: jnp.zeros((c.num_layers, *(sizes[a] for a in axes)), c.dtype)
            for name, axes in CACHE_AXES.items()
        }

    def decode(
        self,
        params: Params,
        tokens_BxT: jax.Array,
        positions_BxT: jax.Array,
        key_mask_BxS: jax.Array,
        cache: dict[str, jax.Array],
        cache_index: jax.Array | int,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Writes T new tokens into cache slots [cache_index, cache_index + T) and returns their
        LM logits [B, T, V]. `key_mask_BxS` marks the slots holding real tokens (new ones included).
        """
        module = self._module(params)
        hidden, cache = module.backbone(
            tokens_BxT,
            positions_BxT,
            key_mask_BxS.astype(jnp.int32),
            cache=cache,
            cache_index=cache_index,
        )
        return module.lm_logits(hidden), cache


def build_model(config: ml_collections.ConfigDict | ModelConfig, heads: Sequence[str] = ("lm",)):
    """The static `Model` (no params allocated) of `config.model` with `heads`. One description
    gives one `Model` object per process, so the functions compiled for it (`model` is a static
    argument of jitted functions, compared by identity) are compiled once, not once per stage."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_config(config)
    heads = tuple(heads)
    if bad := [h for h in heads if h not in HEADS]:
        raise ValueError(f"unknown head(s) {bad}; known heads: {HEADS}")
    return _build_model(config, heads)


@functools.cache
def _build_model(config: ModelConfig, heads: tuple[str, ...]) -> Model:
    abstract_module = nnx.eval_shape(lambda: Transformer(config, heads, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract_module)
    logical_axes = nnx.to_pure_dict(nnx.get_partition_spec(abstract_state))
    abstract_params = nnx.to_pure_dict(abstract_state)
    return Model(config, heads, graphdef, abstract_params, logical_axes)


def transplant_backbone(source: Params, target: Params) -> Params:
    """`target` with its backbone replaced by `source`'s: how a reward or value model starts
    from a policy (or a value model from a reward model). Heads of `target` are kept."""
    mismatched = [
        k
        for k in target
        if k not in HEAD_PARAMS
        and (k not in source or jax.tree.structure(source[k]) != jax.tree.structure(target[k]))
    ]
    if mismatched:
        raise ValueError(f"source and target backbones differ at {mismatched}")
    for key in target:
        if key in HEAD_PARAMS:
            continue
        for a, b in zip(jax.tree.leaves(source[key]), jax.tree.leaves(target[key]), strict=True):
            if a.shape != b.shape:
                raise ValueError(f"backbone param {key!r} has shape {a.shape} vs {b.shape}")
    return {k: (v if k in HEAD_PARAMS else source[k]) for k, v in target.items()}


__all__ = [
    "HEADS",
    "Model",
    "ModelConfig",
    "Params",
    "build_model",
    "default_model_config",
    "positions_from_mask",
    "positions_from_segments",
    "segment_key_mask",
    "transplant_backbone",
]
