"""Token and sequence log-probabilities, entropies and masks: the one implementation every
objective uses.

Alignment convention (docs/conventions.md): logits[:, t] predicts tokens[:, t+1], and the
per-token outputs here are aligned with `tokens`: entry t scores tokens[:, t] given tokens[:, :t];
entry 0 (nothing predicts it) is 0. A `loss_mask` over token positions therefore selects exactly
the response tokens. All math is float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _shift_right(x_BxL: jax.Array) -> jax.Array:
    """Moves per-prediction values onto the positions of the tokens they predict."""
    return jnp.pad(x_BxL[:, :-1], ((0, 0), (1, 0)))


def token_logps(logits_BxLxV: jax.Array, tokens_BxL: jax.Array) -> jax.Array:
    """log p(tokens[t] | tokens[<t]) at position t (0 at t = 0), float32 [B, L]."""
    logps_BxLxV = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
    next_tokens_BxL = jnp.pad(tokens_BxL[:, 1:], ((0, 0), (0, 1)))
    predicted_BxL = jnp.take_along_axis(logps_BxLxV, next_tokens_BxL[..., None], axis=-1)[..., 0]
    return _shift_right(predicted_BxL)


def token_entropy(logits_BxLxV: jax.Array) -> jax.Array:
    """Entropy of the distribution that produced the token at position t (0 at t = 0), [B, L]."""
    logps_BxLxV = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
    entropy_BxL = -jnp.sum(jnp.exp(logps_BxLxV) * logps_BxLxV, axis=-1)
    return _shift_right(entropy_BxL)


def masked_sum(x_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
    return jnp.sum(x_BxL.astype(jnp.float32) * mask_BxL, axis=-1)


def masked_mean(x_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
    """Per-row mean over the mask; a fully masked row gives 0 (denominator max(n, 1))."""
    return masked_sum(x_BxL, mask_BxL) / jnp.maximum(jnp.sum(mask_BxL, axis=-1), 1)


def sequence_logps(
    logits_BxLxV: jax.Array, tokens_BxL: jax.Array, loss_mask_BxL: jax.Array
) -> dict[str, jax.Array]:
    """Sequence log-probs of the masked tokens: 'sum' [B], 'mean' [B] (length-normalised),
    'count' [B] (number of scored tokens) and the per-token 'tokens' [B, L] (masked)."""
    mask = loss_mask_BxL.astype(jnp.float32)
    per_token = token_logps(logits_BxLxV, tokens_BxL) * mask
    count = jnp.sum(mask, axis=-1)
    total = jnp.sum(per_token, axis=-1)
    return {
        "sum": total,
        "mean": total / jnp.maximum(count, 1.0),
        "count": count,
        "tokens": per_token,
    }


def mask_from_lengths(lengths_B: jax.Array, length: int) -> jax.Array:
    """Right-padded validity mask: 1 on the first `lengths[b]` positions."""
    return (jnp.arange(length)[None, :] < lengths_B[:, None]).astype(jnp.int32)


def mask_through_eos(tokens_BxT: jax.Array, eos_id: int) -> jax.Array:
    """Response mask that keeps tokens up to and including the first EOS, zero after it."""
    is_eos = (tokens_BxT == eos_id).astype(jnp.int32)
    eos_before_BxT = jnp.cumsum(is_eos, axis=1) - is_eos
    return (eos_before_BxT == 0).astype(jnp.int32)
