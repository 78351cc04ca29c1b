"""Numeric helpers the losses and advantage estimators share (float32 upcast, NaN-safe masking)."""

import jax
import jax.numpy as jnp


def as_float(x) -> jax.Array:
    """Upcasts to at least float32 (bf16 -> f32, f64 stays f64)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def masked(x, mask) -> jax.Array:
    """x where mask else 0; `where` (not multiply) so NaN/Inf padding cannot leak."""
    return jnp.where(jnp.asarray(mask) > 0, as_float(x), 0.0)
