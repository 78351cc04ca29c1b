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
import numpy as np


def _shift_right(x_BxL: jax.Array) -> jax.Array:
    """Moves per-prediction values onto the positions of the tokens they predict."""
    return jnp.pad(x_BxL[:, :-1], ((0, 0), (1, 0)))


def on_tokens(values_BxW: jax.Array, positions_BxW: jax.Array, length: int) -> jax.Array:
    """Values computed at logits positions `positions_BxW` moved onto the tokens they predict
    (position p -> token p + 1), [B, length], 0 where no value lands."""
    rows_Bx1 = jnp.arange(values_BxW.shape[0])[:, None]
    placed = jnp.zeros((values_BxW.shape[0], length + 1), values_BxW.dtype)
    return placed.at[rows_Bx1, positions_BxW + 1].set(values_BxW)[:, :length]


def token_logps(
    logits_BxLxV: jax.Array, tokens_BxL: jax.Array, positions_BxW: jax.Array | None = None
) -> jax.Array:
    """log p(tokens[t] | tokens[<t]) at position t (0 at t = 0), float32 [B, L]. With
    `positions_BxW` the logits are [B, W, V], computed only at those positions
    (`Model.apply(logits_at_BxW=...)`); tokens no window position predicts get 0."""
    logps = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
    if positions_BxW is None:
        next_tokens_BxL = jnp.pad(tokens_BxL[:, 1:], ((0, 0), (0, 1)))
        predicted_BxL = jnp.take_along_axis(logps, next_tokens_BxL[..., None], axis=-1)[..., 0]
        return _shift_right(predicted_BxL)
    length = tokens_BxL.shape[1]
    next_BxW = jnp.take_along_axis(tokens_BxL, jnp.minimum(positions_BxW + 1, length - 1), axis=1)
    predicted_BxW = jnp.take_along_axis(logps, next_BxW[..., None], axis=-1)[..., 0]
    return on_tokens(predicted_BxW, positions_BxW, length)


def token_entropy(
    logits_BxLxV: jax.Array, positions_BxW: jax.Array | None = None, length: int | None = None
) -> jax.Array:
    """Entropy of the distribution that produced the token at position t (0 at t = 0), [B, L];
    with `positions_BxW` (logits [B, W, V] at those positions), [B, length]."""
    logps_BxLxV = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
    entropy = -jnp.sum(jnp.exp(logps_BxLxV) * logps_BxLxV, axis=-1)
    if positions_BxW is None:
        return _shift_right(entropy)
    return on_tokens(entropy, positions_BxW, length)


def scored_window(loss_mask_BxL: jax.Array, width: int) -> jax.Array:
    """The `width` logits positions of each row [B, width] that predict its scored tokens: from
    the one before the row's first scored token, moved left where the row ends sooner (at most
    the row's length: a wider window is every position). `width` comes from `scored_width` over
    the data; a row whose scored span is longer is not covered (`sequence_logps` then returns
    NaN rather than a wrong sum)."""
    length = loss_mask_BxL.shape[1]
    if width < 1:
        raise ValueError(f"scored width {width} is not positive")
    width = min(width, length)
    first_B = jnp.argmax(loss_mask_BxL > 0, axis=1)
    start_B = jnp.clip(first_B - 1, 0, length - width)
    return start_B[:, None] + jnp.arange(width)[None, :]


def window_misses(loss_mask_BxL: jax.Array, positions_BxW: jax.Array) -> jax.Array:
    """[B] bool: the row has a scored token that no position of its window predicts (token 0,
    which nothing predicts, scores 0 either way)."""
    ones = jnp.ones(positions_BxW.shape, jnp.float32)
    covered = on_tokens(ones, positions_BxW, loss_mask_BxL.shape[1]).at[:, 0].set(1.0)
    return jnp.any(loss_mask_BxL.astype(jnp.float32) > covered, axis=-1)


def scored_width(loss_mask, multiple: int = 16) -> int:
    """The window `scored_window` needs for every row of `loss_mask` (numpy, [..., L]): the
    longest span from a row's first to its last scored token, rounded up to `multiple` (so that
    data of similar shape compiles once) and at most L."""
    mask = np.asarray(loss_mask).reshape(-1, np.shape(loss_mask)[-1]) > 0
    length = mask.shape[1]
    scored = mask.any(axis=1)
    if not scored.any():
        return min(multiple, length)
    first = mask.argmax(axis=1)
    last = length - 1 - mask[:, ::-1].argmax(axis=1)
    span = int(np.max(np.where(scored, last - first + 1, 0)))
    return min(-(-span // multiple) * multiple, length)


def masked_sum(x_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
    return jnp.sum(x_BxL.astype(jnp.float32) * mask_BxL, axis=-1)


def masked_mean(x_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
    """Per-row mean over the mask; a fully masked row gives 0 (denominator max(n, 1))."""
    return masked_sum(x_BxL, mask_BxL) / jnp.maximum(jnp.sum(mask_BxL, axis=-1), 1)


def sequence_logps(
    logits_BxLxV: jax.Array,
    tokens_BxL: jax.Array,
    loss_mask_BxL: jax.Array,
    positions_BxW: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Sequence log-probs of the masked tokens: 'sum' [B], 'mean' [B] (length-normalised),
    'count' [B] (number of scored tokens) and the per-token 'tokens' [B, L] (masked). With
    `positions_BxW` (logits at those positions only, `scored_window`), a row with a scored
    token outside the window gets NaN sums."""
    mask = loss_mask_BxL.astype(jnp.float32)
    per_token = token_logps(logits_BxLxV, tokens_BxL, positions_BxW) * mask
    count = jnp.sum(mask, axis=-1)
    total = jnp.sum(per_token, axis=-1)
    if positions_BxW is not None:
        total = jnp.where(window_misses(mask, positions_BxW), jnp.nan, total)
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
