"""DPO and its offline family (IPO, cDPO, SimPO, ORPO, ...) on preference pairs, by loss name.

The policy and the reference both start from `init_from` (the SFT stage), and the pairs are
that policy's samples (`labels.policy_from`), labelled by a simulated annotator, or a file's
(`data.path`: its pairs, or its prompts with the policy's samples labelled by its verifier);
the reference forward runs inside the same jitted step, or once before training
(`preferences.precompute_reference`). Reports held-out implicit-reward accuracy and margin, and
the gold reward, KL to the reference and length of sampled responses.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from alignax import labels, logprobs, objectives, steps
from alignax.analysis.policy_eval import evaluate_policy, summarize
from alignax.data.layouts import LM_KEYS
from alignax.experiment import check_model_fits_task, initial_params
from alignax.models import build_model
from alignax.tasks import require, stage_task
from alignax.workflows.runner import Context, Stage, StageKind, run_stage


def build_pairs(config, mesh):
    """(train, evaluation, task): the pairs of the file `config.data.path` when it holds
    comparisons; else responses of the policy in `labels.policy_from` (or of the task's
    generator) to training prompts, labelled by a simulated annotator of the task's gold reward
    -- a file of prompts labels them by its verifier (`data.verifier`); evaluation pairs use
    held-out prompts. The task (a data file's, `stage_task`) gives the held-out prompts the
    evaluation samples."""
    task = stage_task(config)
    check_model_fits_task(config.model, task)
    if config.data.path and task.holds("comparison"):
        train, evaluation = (task.encoded("comparison", split) for split in ("train", "eval"))
        if train["tokens"].shape[1] != 2:
            raise ValueError(
                f"{config.data.path}: DPO needs pairs, the file holds "
                f"{train['tokens'].shape[1]}-way rankings"
            )
        return ({k: train[k] for k in LM_KEYS}, {k: evaluation[k] for k in LM_KEYS}, task)
    if config.data.path:
        require(
            task,
            "gold_reward",
            by=f"DPO on the prompts of {config.data.path} (no pairs in it)",
            hint="Declare a verifier (data.verifier) to label the policy's samples",
        )
    p = config.pairs

    def pairs(num, seed, split):
        out = labels.comparisons(config.labels, task, mesh, num, seed=seed, split=split)
        return {k: out[k] for k in LM_KEYS}

    train = pairs(p.num_pairs, config.seed, "train")
    return train, pairs(p.num_eval_pairs, config.seed + 1, "eval"), task


@functools.partial(jax.jit, static_argnames="model")
def _option_logps(model, params, batch):
    return objectives.option_logps(model, params, batch)[0]


def precompute_reference_logps(model, ref_params, pairs: dict, batch_size: int) -> np.ndarray:
    """Reference log-probs of every pair, [N, 2], computed once before training (so each step
    runs one forward pass instead of two)."""
    chunks = [
        np.asarray(
            _option_logps(model, ref_params, {k: v[i : i + batch_size] for k, v in pairs.items()})
        )
        for i in range(0, len(pairs["tokens"]), batch_size)
    ]
    return np.concatenate(chunks).astype(np.float32)


def offline_evaluation(
    model, loss_fn, evaluation: dict, rng, *, task, prompts, max_new_tokens, reference
):
    """`evaluate(state, policy) -> (held-out loss metrics, sampled-response metrics)` of an
    offline stage: its loss on the held-out rows, and the gold reward, KL to `reference(state)`
    and length of the policy's responses to `prompts` (none without prompts; no gold reward for
    a data file without a verifier)."""
    eval_loss = jax.jit(steps.make_eval_step(loss_fn))

    def evaluate(state, policy):
        held_out = jax.device_get(eval_loss(state.replace(params=policy), evaluation, rng))
        if prompts is None:
            return held_out, {}
        result = evaluate_policy(
            model,
            policy,
            task,
            prompts,
            rng,
            ref_params=reference(state),
            max_new_tokens=max_new_tokens,
        )
        return held_out, {f"policy/{k}": v for k, v in summarize(result).items()}

    return evaluate


def build(config, ctx: Context, pairs=None) -> Stage:
    """`pairs`: (train, evaluation, task) labelled elsewhere (experiments/rlaif.py) instead of
    `build_pairs`."""
    train, evaluation, task = build_pairs(config, ctx.mesh) if pairs is None else pairs
    model = build_model(config.model, heads=("lm",))
    params = initial_params(model, config, ctx.mesh, ctx.rngs["init"])
    # Reference-free losses keep no reference copy; BCO-style losses get their running shift.
    slots = objectives.preference_state_slots(config.loss, params)
    # Reference-free losses keep no reference in the state; to report their samples' KL to the
    # initial policy, the evaluation keeps a copy of it (the first step donates `params`).
    initial_copy = None
    kl_to_initial = config.preferences.eval_kl_to_initial and config.lora.rank == 0
    if "ref_params" not in slots and kl_to_initial:
        initial_copy = jax.tree.map(lambda x: jnp.array(x, copy=True), params)
    if config.preferences.precompute_reference:
        train = dict(train)
        train["ref_logps"] = precompute_reference_logps(
            model, params, train, config.train.batch_size
        )
    scored_width = None
    if config.preferences.scored_logits_only:
        scored_width = max(logprobs.scored_width(d["loss_mask"]) for d in (train, evaluation))
    loss_fn = objectives.preference_loss_fn(model, config.loss, scored_width)
    e = config.eval
    offline = offline_evaluation(
        model,
        loss_fn,
        evaluation,
        ctx.rngs["eval"],
        task=task,
        prompts=None
        if task is None
        else task.prompt_dataset(e.num_prompts, seed=config.seed + 2, split="eval"),
        max_new_tokens=e.max_new_tokens,
        reference=lambda state: initial_copy if state.ref_params is None else state.ref_params,
    )

    def evaluate(state, policy):
        held_out, samples = offline(state, policy)
        return {
            "loss": float(held_out["loss"]),
            "accuracy": float(held_out["rewards/accuracy"]),
            "margin": float(held_out["rewards/margin"]),
            **samples,
        }

    def summarize_run(final, initial, state):
        summary = {
            "loss_name": config.loss.name,
            "steps": int(state.step),
            "eval_accuracy": final["accuracy"],
            "eval_margin": final["margin"],
        }
        if task is not None:
            summary.update(
                # None for reference-free losses, unless preferences.eval_kl_to_initial
                kl_to_reference=final.get("policy/kl"),
                response_length=final["policy/length"],
            )
        if "policy/gold" in final:  # a data file without a verifier has no gold reward
            summary["gold_reward"] = final["policy/gold"]
        return summary

    return Stage(
        label=config.loss.name,
        model=model,
        params=params,
        train=train,
        unit="pairs",
        loss_fn=loss_fn,
        wrap_step=lambda step: objectives.preference_train_step(step, config.loss),
        slots=slots,
        evaluate=evaluate,
        summarize=summarize_run,
        log_keys=("loss", "rewards/accuracy", "rewards/margin"),
    )


KIND = StageKind("dpo", build)


def run(config, workdir, pairs=None) -> dict:
    return run_stage(KIND, config, workdir, pairs=pairs)
