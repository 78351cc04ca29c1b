"""What every online RL algorithm shares: the epochs-of-minibatches update and the rollout
metrics."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from alignax.rl.rollout import Rollout, full_loss_mask


def current_policy(state, policy_view: Callable | None):
    """The policy's full params in `state`: `state.params`, or `policy_view(state.params,
    state.ref_params)` when the trained params are a view of it (LoRA adapters over the base in
    `ref_params`; alignax.workflows.runner)."""
    return state.params if policy_view is None else policy_view(state.params, state.ref_params)


def minibatch_updates(
    state, data, loss_fn, tx, *, epochs, num_minibatches, rng, policy_view: Callable | None = None
):
    """`epochs` passes over `data` (dict of [B, ...]) in shuffled minibatches, one optimizer
    update of `state.params` per minibatch, as nested `lax.scan`s. `loss_fn(params, minibatch)
    -> (loss, metrics)` of the policy's full params (through `policy_view`, see
    `current_policy`). Returns the state one iteration on (params, opt_state, step + 1) and the
    mean metrics of the last epoch."""
    if policy_view is not None:
        policy_loss, ref_params = loss_fn, state.ref_params
        loss_fn = lambda trained, mb: policy_loss(policy_view(trained, ref_params), mb)  # noqa: E731
    batch_size = jax.tree.leaves(data)[0].shape[0]
    if batch_size % num_minibatches:
        raise ValueError(
            f"rollout batch {batch_size} is not divisible by num_minibatches={num_minibatches}"
        )
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch(carry, indices):
        params, opt_state = carry
        (loss, metrics), grads = grad_fn(params, jax.tree.map(lambda x: x[indices], data))
        updates, opt_state = tx.update(grads, opt_state, params)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
        return (optax.apply_updates(params, updates), opt_state), metrics

    def epoch(carry, key):
        order = jax.random.permutation(key, batch_size).reshape(num_minibatches, -1)
        return jax.lax.scan(minibatch, carry, order)

    (params, opt_state), metrics = jax.lax.scan(
        epoch, (state.params, state.opt_state), jax.random.split(rng, epochs)
    )
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return state, jax.tree.map(lambda m: jnp.mean(m[-1]), metrics)


def rollout_metrics(rollout: Rollout, gold_fn: Callable | None, inputs: dict) -> dict:
    """Length, EOS rate, entropy, proxy score and sequence KL of a rollout; with `gold_fn`
    (`gold_fn(tokens, input_mask, loss_mask, **inputs) -> [B]`) also its mean `gold/mean`."""
    mask = rollout.response_mask
    metrics = {
        "rollout/response_length": jnp.mean(jnp.sum(mask, axis=-1)),
        "rollout/ended_with_eos": jnp.mean(rollout.ended_with_eos.astype(jnp.float32)),
        "rollout/entropy": jnp.sum(rollout.entropy) / jnp.maximum(jnp.sum(mask), 1.0),
        "proxy/mean": jnp.mean(rollout.scores),
        "kl/sequence": jnp.mean(jnp.sum(rollout.logps - rollout.ref_logps, axis=-1)),
    }
    if gold_fn is not None:
        metrics["gold/mean"] = jnp.mean(
            gold_fn(rollout.tokens, rollout.input_mask, full_loss_mask(rollout), **inputs)
        )
    return metrics
