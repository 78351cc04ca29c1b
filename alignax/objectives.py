"""Objectives: each `*_loss_fn(...)` builder returns
`loss_fn(params, state, batch, rng) -> (loss, metrics)`.

They glue the model forward passes to the primitive losses in `alignax.losses`; the step
builders in `alignax.steps` turn them into jitted train steps. Batch layouts are those of
docs/conventions.md: comparisons are `tokens [B, K, L]` with `ranks [B, K]` (pairs: K = 2,
chosen first).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax import logprobs
from alignax.losses import registry
from alignax.losses.dpo import PreferenceLogps
from alignax.losses.reward import bradley_terry_loss, pairwise_ranking_loss, plackett_luce_loss
from alignax.models import Model

REWARD_LOSSES = ("bradley_terry", "pairwise", "plackett_luce")


def _flatten_options(batch: dict, key: str) -> jax.Array:
    """[B, K, L] -> [B*K, L]."""
    x = batch[key]
    return x.reshape(-1, x.shape[-1])


def lm_loss_fn(model: Model):
    """Next-token cross-entropy on the tokens in `loss_mask`, averaged over all such tokens in the
    batch (pretraining: every real token; SFT: response tokens only)."""

    def loss_fn(params, state, batch, rng):
        del state
        dropout_rng = rng if model.config.dropout_rate > 0 else None
        logits = model.apply(
            params, batch["tokens"], batch["input_mask"], heads=("lm",), dropout_rng=dropout_rng
        )["logits"]
        mask = batch["loss_mask"].astype(jnp.float32)
        num_tokens = jnp.maximum(mask.sum(), 1.0)
        loss = -jnp.sum(logprobs.token_logps(logits, batch["tokens"]) * mask) / num_tokens
        entropy = jnp.sum(logprobs.token_entropy(logits) * mask) / num_tokens
        return loss, {"nll": loss, "entropy": entropy, "tokens": mask.sum()}

    return loss_fn


def _apply_to_options(model: Model, params, batch: dict, head: str) -> dict[str, jax.Array]:
    """One forward pass over every option of every comparison, flattened to [B*K, L]."""
    return model.apply(
        params,
        _flatten_options(batch, "tokens"),
        _flatten_options(batch, "input_mask"),
        heads=(head,),
    )


def comparison_rewards(model: Model, params, batch: dict) -> jax.Array:
    """Reward-model scores of every option of every comparison, [B, K]."""
    rewards = _apply_to_options(model, params, batch, "reward")["rewards"]
    return rewards.reshape(batch["tokens"].shape[:2])


def reward_model_loss_fn(model: Model, loss_config):
    """Reward-model loss on comparisons. `loss_config.name`:
    bradley_terry  pairs only (K = 2): margin from `batch['margin']` if present, centring
                   (`center_coefficient`) and `label_smoothing`;
    pairwise       InstructGPT K-choose-2 over each ranking;
    plackett_luce  listwise likelihood of each ranking.
    """
    if loss_config.name not in REWARD_LOSSES:
        raise ValueError(f"loss.name={loss_config.name!r} is not one of {REWARD_LOSSES}")

    def loss_fn(params, state, batch, rng):
        del state, rng
        rewards = comparison_rewards(model, params, batch)
        ranks = batch["ranks"]
        if loss_config.name == "bradley_terry":
            if rewards.shape[1] != 2:
                raise ValueError(
                    "loss.name='bradley_terry' needs pairs (K=2); use 'pairwise' "
                    f"or 'plackett_luce' for K={rewards.shape[1]}"
                )
            chosen_first = (ranks[:, 0] <= ranks[:, 1])[:, None]
            ordered = jnp.where(chosen_first, rewards, rewards[:, ::-1])
            loss_B, metrics = bradley_terry_loss(
                ordered[:, 0],
                ordered[:, 1],
                margin=batch.get("margin"),
                center_coefficient=loss_config.center_coefficient,
                label_smoothing=loss_config.label_smoothing,
            )
        elif loss_config.name == "pairwise":
            loss_B, metrics = pairwise_ranking_loss(rewards, ranks)
        else:
            loss_B, metrics = plackett_luce_loss(rewards, ranks)
        metrics = {k: jnp.mean(v) for k, v in metrics.items()}
        metrics["rewards/mean"] = jnp.mean(rewards)
        metrics["rewards/std"] = jnp.std(rewards)
        return jnp.mean(loss_B), metrics

    return loss_fn


def ensemble_loss_fn(member_loss_fn):
    """Loss of an ensemble whose members' params are stacked on axis 0: the sum of the members'
    losses, so each member receives exactly its own gradient. Metrics are member means."""

    def loss_fn(params, state, batch, rng):
        losses, metrics = jax.vmap(member_loss_fn, in_axes=(0, None, None, None))(
            params, state, batch, rng
        )
        return jnp.sum(losses), {k: jnp.mean(v) for k, v in metrics.items()}

    return loss_fn


def option_logps(policy: Model, params, batch: dict) -> tuple[jax.Array, jax.Array]:
    """Summed log-probs and scored-token counts of every option of every comparison, [B, K]
    each, in one forward pass over the flattened [B*K, L] batch."""
    shape = batch["tokens"].shape[:2]
    logits = _apply_to_options(policy, params, batch, "lm")["logits"]
    out = logprobs.sequence_logps(
        logits, _flatten_options(batch, "tokens"), _flatten_options(batch, "loss_mask")
    )
    return out["sum"].reshape(shape), out["count"].reshape(shape)


def preference_logps(policy: Model, params, ref_params, batch: dict) -> PreferenceLogps:
    """Policy and reference sequence log-probs of chosen (index 0) and rejected (index 1).
    Reference log-probs precomputed once (`batch['ref_logps'] [B, 2]`, see `option_logps`)
    replace the reference forward pass when present."""
    policy_sums, counts = option_logps(policy, params, batch)
    if "ref_logps" in batch:
        ref_sums = batch["ref_logps"]
    else:
        ref_sums = jax.lax.stop_gradient(option_logps(policy, ref_params, batch)[0])
    return PreferenceLogps(
        policy_chosen=policy_sums[:, 0],
        policy_rejected=policy_sums[:, 1],
        ref_chosen=ref_sums[:, 0],
        ref_rejected=ref_sums[:, 1],
        chosen_lengths=counts[:, 0],
        rejected_lengths=counts[:, 1],
    )


def preference_loss_fn(policy: Model, loss_config):
    """Any offline pairwise loss by name (`loss_config.name`), with the hyperparameters in
    `loss_config.hyperparameters`; the reference model is `state.ref_params`."""
    hyperparameters = dict(loss_config.hyperparameters)
    registry.validate_hyperparameters(loss_config.name, **hyperparameters)
    loss = registry.get_preference_loss(loss_config.name)

    def loss_fn(params, state, batch, rng):
        del rng
        logps = preference_logps(policy, params, state.ref_params, batch)
        loss_B, metrics = loss(logps, **hyperparameters)
        metrics = {k: jnp.mean(v) for k, v in metrics.items()}
        metrics["kl/chosen"] = jnp.mean(logps.policy_chosen - logps.ref_chosen)
        metrics["kl/rejected"] = jnp.mean(logps.policy_rejected - logps.ref_rejected)
        return jnp.mean(loss_B), metrics

    return loss_fn
