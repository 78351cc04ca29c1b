"""Many small training runs as one compiled function (the purejaxrl pattern).

A sweep over seeds, data sizes and label noise of same-shaped reward models is `vmap` over one
pure `train(params, swap, num_pairs, rng)` that runs every step under `lax.scan`: one compile,
no Python loop over jitted calls, and the members train exactly as separate runs would (each has
its own batches, gradient clipping and Adam moments).

    train = make_reward_model_sweep(model, tx, loss_config, pairs, steps=400, batch_size=32)
    params_M, losses_MxS = train(params_M, swap_MxN, num_pairs_M, rngs_M)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from alignax import objectives
from alignax.models import Model


def make_reward_model_sweep(
    model: Model,
    tx: optax.GradientTransformation,
    loss_config,
    pairs: dict,
    *,
    steps: int,
    batch_size: int,
):
    """A jitted, member-vmapped reward-model trainer over shared comparisons.

    `pairs` holds `tokens`/`input_mask` [N, 2, L] with the annotator's (clean) choice first; all
    members read it. Per member: `swap [N]` bool reverses a pair's order (its label flipped, for
    noisy-label members), `num_pairs` restricts it to the first pairs (the data-size axis), and
    `rng` draws its batches (uniform with replacement). Returns (params, losses [steps]) per
    member.
    """
    loss_fn = objectives.reward_model_loss_fn(model, loss_config)
    ranks = jnp.tile(jnp.arange(2, dtype=jnp.int32), (batch_size, 1))

    def train_one(params, swap_N, num_pairs, rng):
        def step(carry, t):
            params, opt_state = carry
            index = jax.random.randint(jax.random.fold_in(rng, t), (batch_size,), 0, num_pairs)
            flip = swap_N[index][:, None, None]
            batch = {
                k: jnp.where(flip, pairs[k][index][:, ::-1], pairs[k][index])
                for k in ("tokens", "input_mask")
            }
            batch["ranks"] = ranks
            loss, grads = jax.value_and_grad(lambda p: loss_fn(p, None, batch, None)[0])(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
        return params, losses

    return jax.jit(jax.vmap(train_one))


def make_member_scorer(model: Model):
    """jitted (params_M, tokens [C, L], input_mask [C, L]) -> rewards [M, C] of every member."""
    apply = lambda p, t, m: model.apply(p, t, m)["rewards"]
    return jax.jit(jax.vmap(apply, in_axes=(0, None, None)))
