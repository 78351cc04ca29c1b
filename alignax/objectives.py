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
from alignax.losses.kto import UnpairedLogps
from alignax.losses.pairwise import PreferenceLogps
from alignax.losses.reward import bradley_terry_loss, pairwise_ranking_loss, plackett_luce_loss
from alignax.losses.spec import LossSpec
from alignax.models import Model

REWARD_LOSSES = ("bradley_terry", "pairwise", "plackett_luce")


def _flatten_options(batch: dict, key: str) -> jax.Array:
    """[B, K, L] -> [B*K, L]."""
    x = batch[key]
    return x.reshape(-1, x.shape[-1])


def _window(loss_mask_BxL: jax.Array, scored_width: int | None) -> jax.Array | None:
    """The LM head's positions when it runs only where tokens are scored (`scored_width`, from
    `logprobs.scored_width` over the data), else None (every position)."""
    if scored_width is None:
        return None
    return logprobs.scored_window(loss_mask_BxL, scored_width)


def lm_loss_fn(model: Model, scored_width: int | None = None):
    """Next-token cross-entropy on the tokens in `loss_mask`, averaged over all such tokens in the
    batch (pretraining: every real token; SFT: response tokens only). A batch of packed rows
    (with `segment_ids`) scores each packed sequence as if it were alone in its row.
    `scored_width`: the LM head runs only on that many positions per row, those that predict
    the scored tokens (`logprobs.scored_window`); the loss is the same, a row scored beyond
    them gives NaN."""

    def loss_fn(params, state, batch, rng):
        del state
        dropout_rng = rng if model.config.dropout_rate > 0 else None
        positions = _window(batch["loss_mask"], scored_width)
        logits = model.apply(
            params,
            batch["tokens"],
            batch["input_mask"],
            heads=("lm",),
            dropout_rng=dropout_rng,
            segment_ids_BxL=batch.get("segment_ids"),
            logits_at_BxW=positions,
        )["logits"]
        mask = batch["loss_mask"].astype(jnp.float32)
        num_tokens = jnp.maximum(mask.sum(), 1.0)
        per_token = logprobs.token_logps(logits, batch["tokens"], positions)
        loss = -jnp.sum(per_token * mask) / num_tokens
        if positions is not None:
            loss = jnp.where(jnp.any(logprobs.window_misses(mask, positions)), jnp.nan, loss)
        length = mask.shape[1]
        entropy = jnp.sum(logprobs.token_entropy(logits, positions, length) * mask) / num_tokens
        return loss, {"nll": loss, "entropy": entropy, "tokens": mask.sum()}

    return loss_fn


def _apply_to_options(
    model: Model, params, batch: dict, head: str, logits_at=None
) -> dict[str, jax.Array]:
    """One forward pass over every option of every comparison, flattened to [B*K, L]."""
    return model.apply(
        params,
        _flatten_options(batch, "tokens"),
        _flatten_options(batch, "input_mask"),
        heads=(head,),
        logits_at_BxW=logits_at,
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


def option_logps(
    policy: Model, params, batch: dict, scored_width: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """Summed log-probs and scored-token counts of every option of every comparison, [B, K]
    each, in one forward pass over the flattened [B*K, L] batch."""
    out = _option_outputs(policy, params, batch, scored_width)
    return out["sum"], out["count"]


def _option_outputs(
    policy: Model, params, batch: dict, scored_width: int | None = None, *, wpo: bool = False
) -> dict:
    """`logprobs.sequence_logps` of every option, reshaped to [B, K] ('tokens': [B, K, L]);
    with `wpo`, also 'wpo' [B, K]: the per-token mean of log p(y_t) - logsumexp_v 2 log p(v)
    (WPO's normalised token probability, Zhou et al. 2024). `scored_width`: the LM head only
    at the positions that predict scored tokens (see `lm_loss_fn`)."""
    shape = batch["tokens"].shape
    mask = _flatten_options(batch, "loss_mask")
    positions = _window(mask, scored_width)
    logits = _apply_to_options(policy, params, batch, "lm", positions)["logits"]
    out = logprobs.sequence_logps(logits, _flatten_options(batch, "tokens"), mask, positions)
    if wpo:
        log_norm = jax.nn.logsumexp(2.0 * jax.nn.log_softmax(logits.astype(jnp.float32)), axis=-1)
        # Moved onto the positions of the tokens they predict, as logprobs.token_logps does.
        if positions is None:
            log_norm = jnp.pad(log_norm[:, :-1], ((0, 0), (1, 0)))
        else:
            log_norm = logprobs.on_tokens(log_norm, positions, mask.shape[1])
        out["wpo"] = logprobs.masked_mean(out["tokens"] - log_norm, mask.astype(jnp.float32))
    return {k: v.reshape(shape if k == "tokens" else shape[:2]) for k, v in out.items()}


def _public_sums(tokens_BxKxL: jax.Array, loss_mask_BxKxL: jax.Array) -> jax.Array:
    """[B, K] sums of the per-token log-probs over the first min_k(n_k) scored tokens of each
    option (LD-DPO's shared "public" length of a pair)."""
    mask = loss_mask_BxKxL.astype(jnp.float32)
    rank = jnp.cumsum(mask, axis=-1)
    public_length = jnp.min(jnp.sum(mask, axis=-1), axis=-1)
    public = mask * (rank <= public_length[:, None, None])
    return jnp.sum(tokens_BxKxL * public, axis=-1)


def preference_logps(
    policy: Model,
    params,
    ref_params,
    batch: dict,
    spec: LossSpec | None = None,
    scored_width: int | None = None,
) -> PreferenceLogps:
    """Policy and reference sequence log-probs of chosen (index 0) and rejected (index 1), plus
    the optional inputs `spec.inputs` declares ("public" for LD-DPO, "wpo" for WPO).

    The reference forward runs only when the loss reads the reference (`spec.reference`; a
    reference-free loss gets zeros and `ref_params` may be None). Reference log-probs
    precomputed once (`batch['ref_logps'] [B, 2]`, see `option_logps`) replace the reference
    forward pass when present (not for losses that need per-token reference values).
    """
    reference = spec is None or spec.reference
    inputs = () if spec is None else spec.inputs
    policy_out = _option_outputs(policy, params, batch, scored_width, wpo="wpo" in inputs)
    extra = {}
    if "wpo" in inputs:
        extra.update(
            chosen_wpo_logps=policy_out["wpo"][:, 0], rejected_wpo_logps=policy_out["wpo"][:, 1]
        )
    zeros = jnp.zeros_like(policy_out["sum"])
    ref_sums = ref_out = None
    if reference and "ref_logps" in batch:
        if "public" in inputs:
            raise ValueError(
                f"loss {spec.name!r} reads per-token reference log-probs: set "
                "preferences.precompute_reference=False"
            )
        ref_sums = batch["ref_logps"]
    elif reference:
        if ref_params is None:
            raise ValueError("this loss reads a reference model but state.ref_params is None")
        ref_out = jax.lax.stop_gradient(_option_outputs(policy, ref_params, batch, scored_width))
        ref_sums = ref_out["sum"]
    else:
        ref_sums = zeros
    if "public" in inputs:
        policy_public = _public_sums(policy_out["tokens"], batch["loss_mask"])
        ref_public = _public_sums(ref_out["tokens"], batch["loss_mask"]) if reference else zeros
        extra.update(
            policy_chosen_public=policy_public[:, 0],
            policy_rejected_public=policy_public[:, 1],
            ref_chosen_public=ref_public[:, 0],
            ref_rejected_public=ref_public[:, 1],
        )
    counts = policy_out["count"]
    return PreferenceLogps(
        policy_chosen=policy_out["sum"][:, 0],
        policy_rejected=policy_out["sum"][:, 1],
        ref_chosen=ref_sums[:, 0],
        ref_rejected=ref_sums[:, 1],
        chosen_lengths=counts[:, 0],
        rejected_lengths=counts[:, 1],
        **extra,
    )


def _running_reward_shift(aux: dict, logps: PreferenceLogps, beta) -> jax.Array:
    """BCO's delta: the running mean of the batch-mean implicit rewards beta (pi - ref) over
    every step so far, this batch included (TRL's RunningMoments of the batch means)."""
    batch_mean = beta * jnp.mean(
        jnp.stack(
            [logps.policy_chosen - logps.ref_chosen, logps.policy_rejected - logps.ref_rejected]
        )
    )
    return _updated_mean(aux, batch_mean)


def _updated_mean(aux: dict, batch_mean: jax.Array) -> jax.Array:
    state = aux["reward_shift"]
    count = state["count"] + 1.0
    return jax.lax.stop_gradient(state["mean"] + (batch_mean - state["mean"]) / count)


def preference_state_slots(loss_config, params) -> dict:
    """The `TrainState.create` slots the loss `loss_config.name` needs: `ref_params` (a copy of
    `params`) only for losses that read a reference (reference-free losses keep no second copy
    of the weights), and `aux['reward_shift']` (running mean, count) for losses that declare it
    (BCO, MPO)."""
    spec = registry.get_spec(loss_config.name)
    slots = {}
    if spec.reference:
        slots["ref_params"] = params
    if spec.aux == "reward_shift":
        slots["aux"] = {
            "reward_shift": {
                "mean": jnp.zeros((), jnp.float32),
                "count": jnp.zeros((), jnp.float32),
            }
        }
    return slots


def preference_train_step(train_step, loss_config):
    """Wraps `steps.make_train_step(preference_loss_fn(...), ...)` so that loop state the loss
    declares is carried: for `aux='reward_shift'` the running mean becomes the delta this step
    used (metric `reward_shift`) and its count grows by one. Other losses: `train_step` itself."""
    spec = registry.get_spec(loss_config.name)
    if spec.aux is None:
        return train_step

    def step(state, batch, rng):
        new_state, metrics = train_step(state, batch, rng)
        shift = {"mean": metrics["reward_shift"], "count": state.aux["reward_shift"]["count"] + 1.0}
        return new_state.replace(aux={**new_state.aux, "reward_shift": shift}), metrics

    return step


def preference_loss_fn(policy: Model, loss_config, scored_width: int | None = None):
    """Any offline pairwise loss by name (`loss_config.name`), with the hyperparameters in
    `loss_config.hyperparameters`. The reference model is `state.ref_params`, read (and run)
    only for losses whose spec needs it; loop state the spec declares is read from `state.aux`
    (see `preference_state_slots`, `preference_train_step`). `scored_width`: the LM head only
    where tokens are scored (see `lm_loss_fn`)."""
    spec = registry.get_spec(loss_config.name)
    hyperparameters = dict(loss_config.hyperparameters)
    registry.validate_hyperparameters(loss_config.name, **hyperparameters)
    loss = registry.get_preference_loss(loss_config.name)

    def loss_fn(params, state, batch, rng):
        del rng
        logps = preference_logps(
            policy, params, state.ref_params, batch, spec=spec, scored_width=scored_width
        )
        extra = {}
        if spec.aux == "reward_shift":
            extra["reward_shift"] = _running_reward_shift(state.aux, logps, hyperparameters["beta"])
        loss_B, metrics = loss(logps, **hyperparameters, **extra)
        metrics = {k: jnp.mean(v) for k, v in metrics.items()}
        if spec.reference:
            metrics["kl/chosen"] = jnp.mean(logps.policy_chosen - logps.ref_chosen)
            metrics["kl/rejected"] = jnp.mean(logps.policy_rejected - logps.ref_rejected)
        if spec.aux == "reward_shift":
            metrics["reward_shift"] = extra["reward_shift"]
        return jnp.mean(loss_B), metrics

    return loss_fn


def unpaired_logps(policy: Model, params, ref_params, batch: dict, spec: LossSpec) -> UnpairedLogps:
    """Sequence log-probs of each example's completion under the policy and the reference, and
    for losses declaring "kl" (KTO) those of the mismatched pairs in `batch['kl_tokens']`,
    `kl_input_mask`, `kl_loss_mask` (the prompt of one example with another's completion; no
    gradient, as z0 is a constant)."""

    def sums(p, prefix=""):
        logits = policy.apply(
            p, batch[prefix + "tokens"], batch[prefix + "input_mask"], heads=("lm",)
        )["logits"]
        return logprobs.sequence_logps(
            logits, batch[prefix + "tokens"], batch[prefix + "loss_mask"]
        )["sum"]

    kl = {}
    if "kl" in spec.inputs:
        kl = {
            "policy_kl": jax.lax.stop_gradient(sums(params, "kl_")),
            "ref_kl": jax.lax.stop_gradient(sums(ref_params, "kl_")),
        }
    return UnpairedLogps(
        policy=sums(params),
        ref=jax.lax.stop_gradient(sums(ref_params)),
        labels=batch["label"],
        **kl,
    )


def unpaired_loss_fn(policy: Model, loss_config):
    """Any unpaired loss by name (`loss_config.name`: kto, apo_zero_unpaired, bco) on a batch of
    `tokens`, `input_mask`, `loss_mask` [B, L] and `label` [B] (1 desirable); KTO also reads the
    mismatched pairs (`kl_*`). Adds `rewards/margin`: mean implicit reward of the desirable rows
    minus that of the undesirable ones."""
    spec = registry.get_spec(loss_config.name)
    if spec.kind != "unpaired":
        raise ValueError(
            f"loss.name={loss_config.name!r} is not an unpaired loss; one of "
            f"{registry.registered('unpaired')}"
        )
    hyperparameters = dict(loss_config.hyperparameters)
    registry.validate_hyperparameters(loss_config.name, **hyperparameters)
    loss = registry.get_unpaired_loss(loss_config.name)

    def loss_fn(params, state, batch, rng):
        del rng
        logps = unpaired_logps(policy, params, state.ref_params, batch, spec)
        rewards = hyperparameters["beta"] * (logps.policy - logps.ref)
        extra = {}
        if spec.aux == "reward_shift":
            extra["reward_shift"] = _updated_mean(
                state.aux, jax.lax.stop_gradient(jnp.mean(rewards))
            )
        loss_B, metrics = loss(logps, **hyperparameters, **extra)
        metrics = {k: jnp.mean(v) for k, v in metrics.items()}
        desirable = (batch["label"] > 0).astype(jnp.float32)

        def mean_over(weights):
            return jnp.sum(rewards * weights) / jnp.maximum(jnp.sum(weights), 1.0)

        metrics["rewards/margin"] = mean_over(desirable) - mean_over(1.0 - desirable)
        if spec.aux == "reward_shift":
            metrics["reward_shift"] = extra["reward_shift"]
        return jnp.mean(loss_B), metrics

    return loss_fn
