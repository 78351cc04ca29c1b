"""Decoder-only transformer in Flax NNX with LM, scalar-reward and per-token value heads.

Every parameter carries logical sharding axes (see `alignax.sharding` for the rules that map them
onto the mesh). The layers are created with `nnx.vmap` (stacked along a leading `layers` axis) and
run under `lax.scan`, so compile time does not grow with depth.

Positions come from the input mask (`cumsum(mask) - 1`), and attention masks padded keys, so a
sequence gives the same outputs whether it is left-padded, right-padded or padded more. Packed
rows (several sequences per row, `segment_ids`) get positions restarting in every segment and a
block-diagonal causal mask, so each sequence gives the outputs it would alone.

The same forward serves training (a whole sequence, no cache) and decoding (`cache` holds keys and
values of every layer in fixed slots; `cache_index` is the slot of the first new token).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from alignax.models.config import ModelConfig
from alignax.sharding import batch_split

# model.remat_policy -> what a rematerialised layer saves for the backward pass.
REMAT_POLICIES = {
    "nothing": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
# Axes of one layer's KV cache (b batch, k kv heads, s slots, d head_dim): keys with head_dim
# minor, values with the slots minor, as the two attention products contract them.
CACHE_AXES = {"k": "bksd", "v": "bkds"}
_NEG_INF = -1e30  # finite, so fully masked rows (left padding) give a uniform softmax, not NaN


def _dense_init(*axes: str | None, scale: float = 1.0):
    return nnx.with_partitioning(nnx.initializers.variance_scaling(scale, "fan_in", "normal"), axes)


class Norm(nnx.Module):
    """RMSNorm or LayerNorm, computed in float32."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        del rngs
        self.kind = config.norm
        self.eps = config.norm_eps
        self.dtype = config.dtype
        pdt = config.param_dtype
        self.scale = nnx.Param(jnp.ones((config.d_model,), pdt), out_sharding=("norm",))
        if self.kind == "layernorm":
            self.bias = nnx.Param(jnp.zeros((config.d_model,), pdt), out_sharding=("norm",))

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        if self.kind == "layernorm":
            x32 = x32 - x32.mean(-1, keepdims=True)
        y = x32 * jax.lax.rsqrt((x32 * x32).mean(-1, keepdims=True) + self.eps)
        y = y * self.scale[...].astype(jnp.float32)
        if self.kind == "layernorm":
            y = y + self.bias[...].astype(jnp.float32)
        return y.astype(self.dtype)


def apply_rope(x_BxLxHxD: jax.Array, positions_BxL: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding (Su et al. 2021), rotate-half convention, in float32."""
    half = x_BxLxHxD.shape[-1] // 2
    freqs = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles_BxLxF = positions_BxL[..., None].astype(jnp.float32) * freqs
    sin = jnp.sin(angles_BxLxF)[:, :, None, :]
    cos = jnp.cos(angles_BxLxF)[:, :, None, :]
    x32 = x_BxLxHxD.astype(jnp.float32)
    x1, x2 = x32[..., :half], x32[..., half:]
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x_BxLxHxD.dtype)


def _dense(x_BxLxD: jax.Array, kernel: jax.Array) -> jax.Array:
    """x @ kernel over the last axis of x and the leading axis of the kernel (the rest of the
    kernel's axes are the output's), as one 2-D matmul over the flattened batch and length.

    On XLA's CPU backend a contraction with a [B, L, D] operand makes the backward pass contract
    over two axes, which it lays out with strided transpose loops fused into the elementwise
    ops: the `small` preset's gradient step took 1.9 s with 3-D operands and 1.3 s flat.
    """
    *lead, d = x_BxLxD.shape
    out = x_BxLxD.reshape(-1, d) @ kernel.reshape(d, -1)
    return out.reshape(*lead, *kernel.shape[1:])


def _dropout(x, rate: float, key):
    if rate == 0.0 or key is None:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


class Attention(nnx.Module):
    """Causal multi-head attention with grouped-query heads and an optional KV cache."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        c = config
        self.config = c
        d, h, k, hd = c.d_model, c.num_heads, c.num_kv_heads, c.head_dim
        pdt = c.param_dtype
        self.q = nnx.Param(
            _dense_init("embed", "heads", "head_dim")(rngs.params(), (d, h, hd), pdt)
        )
        self.k = nnx.Param(
            _dense_init("embed", "kv_heads", "head_dim")(rngs.params(), (d, k, hd), pdt)
        )
        self.v = nnx.Param(
            _dense_init("embed", "kv_heads", "head_dim")(rngs.params(), (d, k, hd), pdt)
        )
        out_scale = 1.0 / (2 * c.num_layers)  # GPT-2 style: residual branches start small
        self.out = nnx.Param(
            nnx.with_partitioning(
                nnx.initializers.variance_scaling(out_scale, "fan_in", "normal", in_axis=(0, 1)),
                ("heads", "head_dim", "embed"),
            )(rngs.params(), (h, hd, d), pdt)
        )
        # Optional biases (zero-initialised), present only when the config asks for them so
        # bias-free models keep their params tree: Qwen2 has q/k/v biases, GPT-2 all four.
        if c.qkv_bias:
            self.q_bias = nnx.Param(jnp.zeros((h, hd), pdt), out_sharding=("heads", "head_dim"))
            self.k_bias = nnx.Param(jnp.zeros((k, hd), pdt), out_sharding=("kv_heads", "head_dim"))
            self.v_bias = nnx.Param(jnp.zeros((k, hd), pdt), out_sharding=("kv_heads", "head_dim"))
        if c.out_bias:
            self.out_bias = nnx.Param(jnp.zeros((d,), pdt), out_sharding=("norm",))

    def __call__(self, x_BxLxD, positions_BxL, key_mask_BxS, query_slots_L, cache, cache_index):
        c = self.config
        dt = c.dtype
        q = _dense(x_BxLxD, self.q[...].astype(dt))
        k = _dense(x_BxLxD, self.k[...].astype(dt))
        v = _dense(x_BxLxD, self.v[...].astype(dt))
        if c.qkv_bias:
            q = q + self.q_bias[...].astype(dt)
            k = k + self.k_bias[...].astype(dt)
            v = v + self.v_bias[...].astype(dt)
        if c.positions == "rope":
            q = apply_rope(q, positions_BxL, c.rope_theta)
            k = apply_rope(k, positions_BxL, c.rope_theta)
        if cache is not None:
            # cache: every layer's keys [layers, B, kv_heads, S, head_dim] and values [layers,
            # B, kv_heads, head_dim, S] (`CACHE_AXES`) and this layer's index; the new entries are
            # written in place (the buffers are loop carries). In these layouts both attention
            # products read the cache as it lies: no transposed copy of it at every token.
            layer = cache["layer"]

            def write(full, new_BxLxKxD, axes):
                new = jnp.einsum(f"bskd->{axes}", new_BxLxKxD.astype(full.dtype))[None]
                start = tuple(cache_index if a == "s" else 0 for a in axes)
                full = jax.lax.dynamic_update_slice(full, new, (layer, *start))
                return full, jax.lax.dynamic_index_in_dim(full, layer, keepdims=False)

            (k_full, k), (v_full, v) = (
                write(cache[name], new, CACHE_AXES[name]) for name, new in (("k", k), ("v", v))
            )
            cache = {"k": k_full, "v": v_full, "layer": layer}
            k_axes, v_axes = CACHE_AXES["k"], CACHE_AXES["v"]
        else:
            k_axes = v_axes = "bskd"
        b, length, h, hd = q.shape
        groups = h // c.num_kv_heads
        q = q.reshape(b, length, c.num_kv_heads, groups, hd)
        scores = jnp.einsum(f"blkgd,{k_axes}->bkgls", q, k.astype(dt)).astype(jnp.float32)
        scores = scores / math.sqrt(hd)
        key_slots_S = jnp.arange(k.shape[k_axes.index("s")])
        causal_1xLxS = (key_slots_S[None, :] <= query_slots_L[:, None])[None]
        # key_mask: [B, S] (which slots hold real tokens) or, for packed rows, [B, L, S] (which
        # keys each query may see: real tokens of its own segment).
        key_allowed = key_mask_BxS[:, None, :] if key_mask_BxS.ndim == 2 else key_mask_BxS
        allowed_BxLxS = causal_1xLxS & (key_allowed > 0)
        scores = jnp.where(allowed_BxLxS[:, None, None], scores, _NEG_INF)
        probs = jax.nn.softmax(scores, axis=-1).astype(dt)
        attn = jnp.einsum(f"bkgls,{v_axes}->blkgd", probs, v.astype(dt)).reshape(b, length, h * hd)
        out = _dense(attn, self.out[...].astype(dt).reshape(h * hd, -1))
        if c.out_bias:
            out = out + self.out_bias[...].astype(dt)
        return out, cache


class Mlp(nnx.Module):
    """Feed-forward block: GELU (GPT-2) or SwiGLU (Llama)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        c = config
        self.kind = c.mlp
        self.dtype = c.dtype
        pdt = c.param_dtype
        self.up = nnx.Param(_dense_init("embed", "mlp")(rngs.params(), (c.d_model, c.mlp_dim), pdt))
        if c.mlp == "swiglu":
            self.gate = nnx.Param(
                _dense_init("embed", "mlp")(rngs.params(), (c.d_model, c.mlp_dim), pdt)
            )
        self.down = nnx.Param(
            _dense_init("mlp", "embed", scale=1.0 / (2 * c.num_layers))(
                rngs.params(), (c.mlp_dim, c.d_model), pdt
            )
        )
        self.use_bias = c.mlp_bias
        if c.mlp_bias:
            self.up_bias = nnx.Param(jnp.zeros((c.mlp_dim,), pdt), out_sharding=("mlp",))
            if c.mlp == "swiglu":
                self.gate_bias = nnx.Param(jnp.zeros((c.mlp_dim,), pdt), out_sharding=("mlp",))
            self.down_bias = nnx.Param(jnp.zeros((c.d_model,), pdt), out_sharding=("norm",))

    def __call__(self, x):
        dt = self.dtype
        up = _dense(x, self.up[...].astype(dt))
        if self.use_bias:
            up = up + self.up_bias[...].astype(dt)
        if self.kind == "swiglu":
            gate = _dense(x, self.gate[...].astype(dt))
            if self.use_bias:
                gate = gate + self.gate_bias[...].astype(dt)
            hidden = jax.nn.silu(gate) * up
        else:
            hidden = jax.nn.gelu(up)  # tanh approximation, as GPT-2's "gelu_new"
        out = _dense(hidden, self.down[...].astype(dt))
        if self.use_bias:
            out = out + self.down_bias[...].astype(dt)
        return out


class Block(nnx.Module):
    """Pre-norm transformer block."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.dropout_rate = config.dropout_rate
        self.attn_norm = Norm(config, rngs=rngs)
        self.attn = Attention(config, rngs=rngs)
        self.mlp_norm = Norm(config, rngs=rngs)
        self.mlp = Mlp(config, rngs=rngs)

    def __call__(self, x, positions, key_mask, query_slots, cache, cache_index, dropout_key):
        keys = (None, None) if dropout_key is None else jax.random.split(dropout_key)
        attn_out, cache = self.attn(
            self.attn_norm(x), positions, key_mask, query_slots, cache, cache_index
        )
        x = x + _dropout(attn_out, self.dropout_rate, keys[0])
        x = x + _dropout(self.mlp(self.mlp_norm(x)), self.dropout_rate, keys[1])
        return x, cache


class Transformer(nnx.Module):
    """Backbone plus the heads named in `heads` ('lm', 'reward', 'value')."""

    def __init__(self, config: ModelConfig, heads: Sequence[str], *, rngs: nnx.Rngs):
        c = config
        self.config = c
        self.heads = tuple(heads)
        pdt = c.param_dtype
        self.embed = nnx.Param(
            nnx.with_partitioning(nnx.initializers.normal(0.02), ("vocab", "embed"))(
                rngs.params(), (c.vocab_size, c.d_model), pdt
            )
        )
        if c.positions == "learned":
            self.position_embed = nnx.Param(
                nnx.with_partitioning(nnx.initializers.normal(0.01), ("positions", "embed"))(
                    rngs.params(), (c.max_len, c.d_model), pdt
                )
            )

        @nnx.split_rngs(splits=c.num_layers)
        @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def make_blocks(rngs):
            return Block(c, rngs=rngs)

        self.blocks = make_blocks(rngs)
        self.final_norm = Norm(c, rngs=rngs)
        if "lm" in self.heads and not c.tie_embeddings:
            self.lm_head = nnx.Param(
                _dense_init("embed", "vocab")(rngs.params(), (c.d_model, c.vocab_size), pdt)
            )
        if "reward" in self.heads:
            # Stiennon et al. 2020: reward head ~ N(0, 1/(d_model + 1)).
            std = 1.0 / math.sqrt(c.d_model + 1)
            self.reward_head = nnx.Param(
                nnx.with_partitioning(nnx.initializers.normal(std), ("embed", None))(
                    rngs.params(), (c.d_model, 1), pdt
                )
            )
            self.reward_bias = nnx.Param(jnp.zeros((1,), pdt), out_sharding=(None,))
        if "value" in self.heads:
            self.value_head = nnx.Param(
                jnp.zeros((c.d_model, 1), pdt), out_sharding=("embed", None)
            )
            self.value_bias = nnx.Param(jnp.zeros((1,), pdt), out_sharding=(None,))

    def backbone(
        self,
        tokens_BxL,
        positions_BxL,
        key_mask_BxS,
        *,
        cache=None,
        cache_index=0,
        dropout_key=None,
    ):
        """Final-normed hidden states `[B, L, D]` and the updated cache (or None)."""
        c = self.config
        x = self.embed[...].astype(c.dtype)[tokens_BxL]
        if c.positions == "learned":
            x = x + self.position_embed[...].astype(c.dtype)[positions_BxL]
        x = batch_split(x)
        query_slots_L = cache_index + jnp.arange(tokens_BxL.shape[1])
        block_graph, block_state = nnx.split(self.blocks)
        layer_keys = None if dropout_key is None else jax.random.split(dropout_key, c.num_layers)

        def layer(x, scanned):
            state, layer_cache, key = scanned
            block = nnx.merge(block_graph, state)
            x, layer_cache = block(
                x, positions_BxL, key_mask_BxS, query_slots_L, layer_cache, cache_index, key
            )
            return batch_split(x), layer_cache

        if cache is not None:
            # Decoding: the whole cache is a loop carry, so each layer updates its slots in place
            # instead of the scan slicing out and restacking every layer's cache.
            def cached_layer(carry, scanned):
                x, cache_k, cache_v = carry
                state, index = scanned
                block = nnx.merge(block_graph, state)
                layer_cache = {"k": cache_k, "v": cache_v, "layer": index}
                x, layer_cache = block(
                    x, positions_BxL, key_mask_BxS, query_slots_L, layer_cache, cache_index, None
                )
                return (x, layer_cache["k"], layer_cache["v"]), None

            (x, cache_k, cache_v), _ = jax.lax.scan(
                cached_layer, (x, cache["k"], cache["v"]), (block_state, jnp.arange(c.num_layers))
            )
            return self.final_norm(x), {"k": cache_k, "v": cache_v}
        if c.remat:
            layer = jax.checkpoint(layer, policy=REMAT_POLICIES[c.remat_policy])
        x, cache = jax.lax.scan(layer, x, (block_state, cache, layer_keys))
        return self.final_norm(x), cache

    def lm_logits(self, hidden_BxLxD):
        kernel = self.embed[...].T if self.config.tie_embeddings else self.lm_head[...]
        logits = _dense(hidden_BxLxD, kernel.astype(self.config.dtype)).astype(jnp.float32)
        return batch_split(logits)

    def reward(self, hidden_BxLxD, input_mask_BxL):
        """Scalar reward read at the last real token of each sequence."""
        length = input_mask_BxL.shape[1]
        last_BxL = jnp.argmax(jnp.flip(input_mask_BxL, axis=1), axis=1)
        last_index_B = length - 1 - last_BxL
        last_hidden_BxD = jnp.take_along_axis(hidden_BxLxD, last_index_B[:, None, None], axis=1)[
            :, 0
        ].astype(jnp.float32)
        head = self.reward_head[...].astype(jnp.float32)
        return (last_hidden_BxD @ head)[:, 0] + self.reward_bias[0]

    def value(self, hidden_BxLxD):
        head = self.value_head[...].astype(jnp.float32)
        return (hidden_BxLxD.astype(jnp.float32) @ head)[..., 0] + self.value_bias[0]
