"""Supervised fine-tuning (and pretraining): next-token loss on the scored tokens.

With `sft.data = 'demonstrations'` the loss covers response tokens only (prompt masked); with
'pretraining' it covers every token of generator text. Evaluates held-out NLL and the gold reward
of sampled responses (their texts go to samples.jsonl). With `data.path`, the demonstrations are
a file's ({prompt, completion} or {messages} records; alignax/tasks/file.py), and the gold reward
its verifier's (`data.verifier`), if it declares one.
"""

from __future__ import annotations

import jax

from alignax import logprobs, objectives, sharding, steps
from alignax.analysis.policy_eval import evaluate_policy, summarize
from alignax.data.batching import pack_sequences
from alignax.data.layouts import LM_KEYS
from alignax.experiment import check_model_fits_task, initial_params
from alignax.models import build_model
from alignax.tasks import require, stage_task
from alignax.workflows.runner import Context, Stage, StageKind, run_stage


def build_data(config, task):
    """(train, eval) arrays in the LM layout."""
    s = config.sft
    if s.data == "pretraining":
        require(task, "pretraining_text", by="sft.data='pretraining'")
        train = task.pretraining_dataset(s.num_examples, seed=config.seed)
        evaluation = task.pretraining_dataset(
            s.num_eval_examples, seed=config.seed + 1, split="eval"
        )
    elif s.data == "demonstrations":
        require(task, "demonstrations", by="sft.data='demonstrations'")
        # Demonstrations chosen by gold among `sft.num_candidates` candidates where the task
        # makes them so (the review task's); otherwise the task's own (arithmetic: the answers).
        best_of = (
            {"num_candidates": s.num_candidates}
            if "best_of_n_demonstrations" in task.capabilities
            else {}
        )
        train = task.sft_dataset(s.num_examples, seed=config.seed, **best_of)
        evaluation = task.sft_dataset(
            s.num_eval_examples, seed=config.seed + 1, split="eval", **best_of
        )
    else:
        raise ValueError(f"sft.data={s.data!r} is not one of ('pretraining', 'demonstrations')")
    train, evaluation = {k: train[k] for k in LM_KEYS}, {k: evaluation[k] for k in LM_KEYS}
    return (pack_rows(train) if s.pack else train), evaluation


def pack_rows(arrays: dict) -> dict:
    """Padded LM rows -> packed rows of the same length (`pack_sequences`), with segment_ids."""
    real = arrays["input_mask"].astype(bool)
    return pack_sequences(
        [row[keep] for row, keep in zip(arrays["tokens"], real, strict=True)],
        arrays["tokens"].shape[1],
        loss_masks=[row[keep] for row, keep in zip(arrays["loss_mask"], real, strict=True)],
    )


def build(config, ctx: Context, data=None) -> Stage:
    """`data`: (train, eval) arrays in the LM layout built elsewhere (experiments/
    critique_revision.py: revised responses) instead of `build_data`."""
    task = stage_task(config)
    check_model_fits_task(config.model, task)
    train_data, eval_data = build_data(config, task) if data is None else data
    model = build_model(config.model, heads=("lm",))
    scored_width = None
    if config.sft.scored_logits_only:
        masks = [d["loss_mask"] for d in (train_data, eval_data)]
        scored_width = max(logprobs.scored_width(m) for m in masks)
    loss_fn = objectives.lm_loss_fn(model, scored_width)
    eval_batch = sharding.shard_batch(eval_data, ctx.mesh)
    eval_loss = jax.jit(steps.make_eval_step(loss_fn))
    prompts = task.prompt_dataset(config.eval.num_prompts, seed=config.seed + 2, split="eval")

    def evaluate(state, policy):
        nll = float(eval_loss(state.replace(params=policy), eval_batch, ctx.rngs["eval"])["nll"])
        result = evaluate_policy(
            model,
            policy,
            task,
            prompts,
            ctx.rngs["eval"],
            max_new_tokens=config.eval.max_new_tokens,
        )
        policy_metrics = {f"policy/{k}": v for k, v in summarize(result).items()}
        return {"nll": nll, **policy_metrics, "texts": result["texts"]}

    def summarize_run(final, initial, state):
        summary = {
            "steps": int(state.step),
            "eval_nll": final["nll"],
            "response_length": final["policy/length"],
            "ended_with_eos": final["policy/ended_with_eos"],
        }
        if "policy/gold" in final:  # a data file without a verifier has no gold reward
            summary["gold_reward"] = final["policy/gold"]
        return summary

    return Stage(
        label=config.sft.data,
        model=model,
        params=initial_params(model, config, ctx.mesh, ctx.rngs["init"]),
        train=train_data,
        unit="examples",
        loss_fn=loss_fn,
        evaluate=evaluate,
        summarize=summarize_run,
        log_keys=("loss", "entropy"),
    )


KIND = StageKind("sft", build)


def run(config, workdir, data=None) -> dict:
    return run_stage(KIND, config, workdir, data=data)
