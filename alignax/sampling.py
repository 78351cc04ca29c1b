"""Autoregressive sampling with a KV cache: temperature, top-k, top-p, greedy, per-sequence EOS.

Prompts are LEFT-padded ([B, P] with `prompt_mask`), so every row's next token is predicted at the
last slot; prompts of different lengths share one cache index. The response is written into slots
P..P+T-1; after a row emits EOS its further tokens are padding and masked out.

The output is in the library's sequence layout (docs/conventions.md): `tokens [B, P+T]`,
`input_mask`, `loss_mask` (response tokens up to and including EOS) and `logps` aligned with tokens
(log-prob of each response token under softmax(logits / temperature), before top-k/top-p filtering,
as the policy-gradient losses expect; 0 elsewhere). Sampling always takes a key.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from alignax.models import Model, Params, positions_from_mask


class Samples(NamedTuple):
    tokens: jax.Array  # [B, P+T] int32, prompt (left-padded) then response (right-padded)
    input_mask: jax.Array  # [B, P+T] int32
    loss_mask: jax.Array  # [B, P+T] int32, response tokens including EOS
    logps: jax.Array  # [B, P+T] float32, sampler log-probs of response tokens, 0 elsewhere
    ended_with_eos: jax.Array  # [B] bool


def filter_logits(logits_BxV: jax.Array, *, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
    """Sets logits outside the top-k set and outside the top-p nucleus to -inf."""
    if top_k > 0:
        kth_largest = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
        logits_BxV = jnp.where(logits_BxV < kth_largest, -jnp.inf, logits_BxV)
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
        sorted_probs = jax.nn.softmax(sorted_logits, axis=-1)
        mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        kept = mass_before < top_p
        threshold = jnp.min(jnp.where(kept, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits_BxV = jnp.where(logits_BxV < threshold, -jnp.inf, logits_BxV)
    return logits_BxV


def geometric_mixture(logits_BxV: jax.Array, ref_logits_BxV: jax.Array, coef) -> jax.Array:
    """Logits of the per-token geometric mixture pi^(1 - coef) * pi_ref^coef (normalised by the
    softmax that follows): (1 - coef) log pi + coef log pi_ref. coef = 0 is pi, 1 is pi_ref."""
    return (1.0 - coef) * jax.nn.log_softmax(logits_BxV, axis=-1) + coef * jax.nn.log_softmax(
        ref_logits_BxV, axis=-1
    )


def _choose(logits_BxV, rng, temperature, top_k, top_p):
    """Next tokens and their log-probs under softmax(logits / temperature)."""
    if temperature == 0.0:
        tokens = jnp.argmax(logits_BxV, axis=-1)
        logps = jax.nn.log_softmax(logits_BxV, axis=-1)
    else:
        scaled = logits_BxV / temperature
        logps = jax.nn.log_softmax(scaled, axis=-1)
        tokens = jax.random.categorical(rng, filter_logits(scaled, top_k=top_k, top_p=top_p))
    return tokens.astype(jnp.int32), jnp.take_along_axis(logps, tokens[:, None], axis=-1)[:, 0]


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "max_new_tokens",
        "temperature",
        "top_k",
        "top_p",
        "eos_id",
        "pad_id",
        "use_cache",
    ),
)
def sample(
    model: Model,
    params: Params,
    prompt_tokens_BxP: jax.Array,
    prompt_mask_BxP: jax.Array,
    rng: jax.Array,
    *,
    max_new_tokens: int,
    eos_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    pad_id: int = 0,
    use_cache: bool = True,
    mixture: tuple[Params, jax.Array | float] | None = None,
) -> Samples:
    """Samples up to `max_new_tokens` per prompt. temperature=0 is greedy decoding.

    `use_cache=False` recomputes the whole prefix at every step (the reference the KV cache is
    tested and benchmarked against). `mixture=(ref_params, coef)` samples from the per-token
    geometric mixture of the model at `params` and at `ref_params` (`geometric_mixture`, Nash-MD's
    sampling policy); `logps` are then the mixture's.
    """
    batch, prompt_len = prompt_tokens_BxP.shape
    total = prompt_len + max_new_tokens
    if total > model.config.max_len:
        raise ValueError(
            f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} exceeds "
            f"model.max_len={model.config.max_len}"
        )
    prompt_mask_BxP = prompt_mask_BxP.astype(jnp.int32)
    tokens_BxS = jnp.pad(
        prompt_tokens_BxP, ((0, 0), (0, max_new_tokens)), constant_values=pad_id
    ).astype(jnp.int32)
    mask_BxS = jnp.pad(prompt_mask_BxP, ((0, 0), (0, max_new_tokens)))
    prompt_positions = positions_from_mask(prompt_mask_BxP)
    # One KV cache per parameter set: the model's, and with `mixture` the reference's.
    param_sets = (params,) if mixture is None else (params, mixture[0])

    def next_token_logits(logits_of_each):
        if mixture is None:
            return logits_of_each[0]
        return geometric_mixture(*logits_of_each, mixture[1])

    if use_cache:
        caches, logits_of_each = [], []
        for p in param_sets:
            logits, cache = model.decode(
                p, prompt_tokens_BxP, prompt_positions, mask_BxS, model.init_cache(batch, total), 0
            )
            caches.append(cache)
            logits_of_each.append(logits[:, -1])
        caches = tuple(caches)
    else:
        caches = None
        logits_of_each = [
            model.apply(p, prompt_tokens_BxP, prompt_mask_BxP, heads=("lm",))["logits"][:, -1]
            for p in param_sets
        ]
    next_logits = next_token_logits(logits_of_each)
    next_position_B = prompt_positions[:, -1] + 1

    def step(carry, t):
        tokens_BxS, mask_BxS, caches, next_logits, position_B, done_B = carry
        token_B, logp_B = _choose(
            next_logits, jax.random.fold_in(rng, t), temperature, top_k, top_p
        )
        live_B = ~done_B
        token_B = jnp.where(live_B, token_B, pad_id)
        slot = prompt_len + t
        tokens_BxS = tokens_BxS.at[:, slot].set(token_B)
        mask_BxS = mask_BxS.at[:, slot].set(live_B.astype(jnp.int32))
        if use_cache:
            decoded = [
                model.decode(p, token_B[:, None], position_B[:, None], mask_BxS, cache, slot)
                for p, cache in zip(param_sets, caches)
            ]
            caches = tuple(cache for _, cache in decoded)
            next_logits = next_token_logits([logits[:, 0] for logits, _ in decoded])
        else:
            next_logits = next_token_logits(
                [
                    jax.lax.dynamic_index_in_dim(
                        model.apply(p, tokens_BxS, mask_BxS, heads=("lm",))["logits"],
                        slot,
                        axis=1,
                        keepdims=False,
                    )
                    for p in param_sets
                ]
            )
        done_B = done_B | (token_B == eos_id)
        carry = (tokens_BxS, mask_BxS, caches, next_logits, position_B + 1, done_B)
        return carry, (jnp.where(live_B, logp_B, 0.0), live_B)

    init = (tokens_BxS, mask_BxS, caches, next_logits, next_position_B, jnp.zeros(batch, bool))
    (tokens_BxS, mask_BxS, _, _, _, done_B), (logps_TxB, live_TxB) = jax.lax.scan(
        step, init, jnp.arange(max_new_tokens)
    )
    prompt_zeros = jnp.zeros((batch, prompt_len))
    return Samples(
        tokens=tokens_BxS,
        input_mask=mask_BxS,
        loss_mask=jnp.concatenate([prompt_zeros, live_TxB.T], axis=1).astype(jnp.int32),
        logps=jnp.concatenate([prompt_zeros, logps_TxB.T], axis=1),
        ended_with_eos=done_B,
    )
