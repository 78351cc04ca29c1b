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
import numpy as np
import optax

from alignax import objectives
from alignax.losses import confidence_bradley_terry_loss
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

    train = jax.jit(jax.vmap(train_one))
    available = len(pairs["tokens"])

    def checked(params, swap, num_pairs, rng):
        # Out-of-range indices would be clamped inside jit: a member asking for more pairs than
        # there are would train on the last pair over and over.
        counts = np.asarray(num_pairs)
        if counts.min() < 1 or counts.max() > available:
            raise ValueError(
                f"num_pairs {counts.tolist()}: each must be in [1, {available}] (the pairs given)"
            )
        return train(params, swap, num_pairs, rng)

    return checked


def make_soft_label_reward_sweep(
    model: Model,
    tx: optax.GradientTransformation,
    pairs: dict,
    *,
    steps: int,
    batch_size: int,
    center_coefficient: float,
    confidence_warmup: float,
    weighted: bool = False,
    with_covariate: bool = False,
):
    """A jitted, member-vmapped reward-model trainer on soft labels, with Burns et al.'s
    auxiliary confidence loss (`losses.confidence_bradley_terry_loss`).

    `pairs` holds `tokens`/`input_mask` [N, 2, L] in any order; all members read it. Per
    member: `target [N]`, its supervisor's P(first preferred) (1/0 for hard labels; a weak
    model's probability for a student), `start` and `count`, the pairs it trains on
    (`start` .. `start + count`, drawn uniformly with replacement by its `rng`), and
    `confidence`, alpha of the confidence term, warmed up linearly from 0 over the first
    `confidence_warmup` of the steps (Burns et al. warm up over the first 20%). With `weighted`,
    each member also takes `weight [N]` >= 0, the weight of each pair in its loss (e.g. an EM
    step's responsibilities): its batches are drawn in proportion to them, so each is an
    unbiased estimate of the weighted loss at the full batch size. With `with_covariate`, each
    member also takes `covariate [N]`, a known nuisance feature of each pair (the first
    response's minus the second's, e.g. their length difference), and its params are a pair
    (model params, coefficient c): the Bradley-Terry margin is r_1 - r_2 + c x, so the labels'
    dependence on x is fitted by c beside the model rather than by it (a member whose covariate
    is 0 trains exactly as without). Returns (params, losses [steps]) per member.
    """
    ramp = max(1.0, confidence_warmup * steps)
    available = len(pairs["tokens"])
    positions = jnp.arange(available)

    def train_one(params, target_N, start, count, confidence, rng, weight_N, covariate_N):
        def step(carry, t):
            params, opt_state = carry
            key = jax.random.fold_in(rng, t)
            if weight_N is None:
                index = start + jax.random.randint(key, (batch_size,), 0, count)
            else:  # drawn in proportion to the weights, within the member's range
                within = (positions >= start) & (positions < start + count)
                p = jnp.where(within, weight_N, 0.0)
                index = jax.random.choice(key, available, (batch_size,), p=p / jnp.sum(p))
            batch = {k: pairs[k][index] for k in ("tokens", "input_mask")}
            alpha = confidence * jnp.minimum(1.0, t / ramp)

            def loss(p):
                model_params, coefficient = p if with_covariate else (p, 0.0)
                rewards = objectives.comparison_rewards(model, model_params, batch)
                # Half of c x on each side: the margin gains c x, the centring term sees none.
                shift = 0.5 * coefficient * covariate_N[index] if with_covariate else 0.0
                per_pair, _ = confidence_bradley_terry_loss(
                    rewards[:, 0] + shift,
                    rewards[:, 1] - shift,
                    target_N[index],
                    confidence_weight=alpha,
                    center_coefficient=center_coefficient,
                )
                return jnp.mean(per_pair)

            value, grads = jax.value_and_grad(loss)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
        return params, losses

    train = jax.jit(jax.vmap(train_one))

    def checked(params, target, start, count, confidence, rng, weight=None, covariate=None):
        # Out-of-range indices would be clamped inside jit (see make_reward_model_sweep).
        if (weight is None) == weighted:
            raise ValueError(
                "a weighted sweep takes a weight per member and pair; an unweighted one none"
            )
        if (covariate is None) == with_covariate:
            raise ValueError(
                "a covariate sweep takes a covariate per member and pair and (params, "
                "coefficients); one without a covariate neither"
            )
        start, count = np.asarray(start), np.asarray(count)
        if start.min() < 0 or count.min() < 1 or (start + count).max() > available:
            raise ValueError(
                f"pairs {start.tolist()} + {count.tolist()}: each range must lie in "
                f"[0, {available}) (the pairs given) and hold at least one pair"
            )
        if weight is not None:
            w = np.asarray(weight)
            within = [w[m, a : a + c].sum() for m, (a, c) in enumerate(zip(start, count))]
            if (w < 0).any() or min(within) <= 0:
                raise ValueError(
                    "pair weights must be >= 0, with a positive sum in each member's range"
                )
        return train(params, target, start, count, confidence, rng, weight, covariate)

    return checked


def make_member_scorer(model: Model):
    """jitted (params_M, tokens [C, L], input_mask [C, L]) -> rewards [M, C] of every member."""
    apply = lambda p, t, m: model.apply(p, t, m)["rewards"]
    return jax.jit(jax.vmap(apply, in_axes=(0, None, None)))


def make_bandit_preference_sweep(
    loss_fn,
    *,
    rewards,
    ref_logps,
    steps: int,
    batch_size: int,
    learning_rate: float,
):
    """A seeds x beta sweep of a pairwise preference loss on a K-armed bandit, one compile.

    Each run starts at the reference policy (logits = `ref_logps`) and, every step, draws
    `batch_size` ordered pairs of distinct arms uniformly, labels each by a Bradley-Terry
    annotator of `rewards` (P(i preferred) = sigmoid(r_i - r_j)) and takes an Adam step (cosine
    decayed learning rate) on
    `loss_fn(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=beta)`.
    For DPO the runs approach pi_ref exp(r / beta) / Z.

    Returns jitted `sweep(betas [B], rngs [S]) -> logits [B, S, K]`.
    """
    rewards = jnp.asarray(rewards, jnp.float32)
    ref_logps = jnp.asarray(ref_logps, jnp.float32)
    num_arms = rewards.shape[0]
    # Decayed to 0 so each run settles on its optimum instead of jittering around it.
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))

    def train(beta, rng):
        def step(carry, t):
            logits, opt_state = carry
            arms_key, offset_key, label_key = jax.random.split(jax.random.fold_in(rng, t), 3)
            i = jax.random.randint(arms_key, (batch_size,), 0, num_arms)
            j = (i + jax.random.randint(offset_key, (batch_size,), 1, num_arms)) % num_arms
            i_wins = jax.random.uniform(label_key, (batch_size,)) < jax.nn.sigmoid(
                rewards[i] - rewards[j]
            )
            chosen, rejected = jnp.where(i_wins, i, j), jnp.where(i_wins, j, i)

            def loss(logits):
                logps = jax.nn.log_softmax(logits)
                per_pair, _ = loss_fn(
                    logps[chosen],
                    logps[rejected],
                    ref_logps[chosen],
                    ref_logps[rejected],
                    beta=beta,
                )
                return jnp.mean(per_pair)

            updates, opt_state = tx.update(jax.grad(loss)(logits), opt_state)
            return (optax.apply_updates(logits, updates), opt_state), None

        (logits, _), _ = jax.lax.scan(step, (ref_logps, tx.init(ref_logps)), jnp.arange(steps))
        return logits

    over_seeds = jax.vmap(train, in_axes=(None, 0))
    return jax.jit(jax.vmap(over_seeds, in_axes=(0, None)))
