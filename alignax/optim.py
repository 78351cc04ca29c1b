"""The optimizer every stage trains with: AdamW, linear warm-up then cosine or constant decay,
global-norm clipping (per member for a stacked ensemble), from the `optimizer` config section."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax


def default_optimizer_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "learning_rate": 1e-3,
            "warmup_steps": 10,
            "schedule": "cosine",
            "weight_decay": 0.0,
            "b1": 0.9,
            "b2": 0.95,
            "grad_clip": 1.0,
        }
    )


def clip_by_member_norm(max_norm: float) -> optax.GradientTransformation:
    """Global-norm clipping of each slice along the leading axis separately: for an ensemble
    whose members are stacked on axis 0, each member is clipped as if it trained alone."""

    def update_fn(updates, state, params=None):
        del params
        leaves = jax.tree.leaves(updates)
        squares = sum(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim))) for x in leaves)
        scale = jnp.minimum(1.0, max_norm / jnp.maximum(jnp.sqrt(squares), 1e-12))
        scaled = jax.tree.map(lambda x: x * scale.reshape((-1,) + (1,) * (x.ndim - 1)), updates)
        return scaled, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def make_optimizer(config, *, stacked_members: bool = False) -> optax.GradientTransformation:
    """AdamW with linear warm-up then cosine (or constant) decay and global-norm clipping.

    Reads `config.optimizer.{learning_rate, warmup_steps, schedule, weight_decay, b1, b2,
    grad_clip}` and `config.train.steps`. With `stacked_members` the params are an ensemble
    stacked on axis 0 and each member's gradient is clipped on its own (AdamW is elementwise, so
    the members then train exactly as separate runs would).
    """
    opt = config.optimizer
    total = config.train.steps
    if opt.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0,
            opt.learning_rate,
            opt.warmup_steps,
            max(total, opt.warmup_steps + 1),
            end_value=opt.learning_rate * 0.1,
        )
    elif opt.schedule == "constant":
        lr = optax.join_schedules(
            [
                optax.linear_schedule(0.0, opt.learning_rate, max(opt.warmup_steps, 1)),
                optax.constant_schedule(opt.learning_rate),
            ],
            [opt.warmup_steps],
        )
    else:
        raise ValueError(
            f"optimizer.schedule={opt.schedule!r} is not one of ('cosine', 'constant')"
        )
    clip = clip_by_member_norm if stacked_members else optax.clip_by_global_norm
    return optax.chain(
        clip(opt.grad_clip),
        optax.adamw(lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay),
    )
