"""KTO and the other unpaired losses (APO-zero unpaired, BCO) on desirable / undesirable
examples, by loss name.

Examples come from a KTO file ({prompt, completion, label} records, `config.data.path`) or from
the built-in task: the simulated annotator's pairs of the policy's samples, each split into its
chosen (desirable) and rejected (undesirable) response. KTO's reference point z0 is estimated on
mismatched pairs (one example's prompt with another's completion), built once here. Reports the
held-out loss and implicit-reward margin (desirable minus undesirable), and the KL to the
reference, length and gold reward (where the task has one: a file with a verifier) of responses
sampled on held-out prompts (a file's: `alignax.tasks.stage_task`), before and after training.
"""

from __future__ import annotations

import numpy as np

from alignax import labels, objectives
from alignax.data.layouts import LM_KEYS
from alignax.experiment import check_model_fits_task, initial_params
from alignax.models import build_model
from alignax.tasks import stage_task
from alignax.workflows.preference import offline_evaluation
from alignax.workflows.runner import Context, Stage, StageKind, run_stage


def unpair(pairs: dict) -> dict:
    """Comparisons [N, 2, L] (chosen first) -> unpaired examples [2N, L] with `label` 1 for the
    chosen and 0 for the rejected response, interleaved (chosen_0, rejected_0, chosen_1, ...)."""
    n = pairs["tokens"].shape[0]
    out = {k: np.asarray(pairs[k]).reshape(2 * n, -1) for k in LM_KEYS}
    out["label"] = np.tile(np.array([1, 0], np.int32), n)
    return out


def with_mismatched_pairs(examples: dict, seed: int) -> dict:
    """Adds `kl_tokens`, `kl_input_mask`, `kl_loss_mask`: example i's prompt followed by the
    completion of example (i + k) mod N for a seeded k in [1, N), right-padded to the same width
    (completions cut at the width). KTO estimates its reference point on these."""
    tokens, input_mask, loss_mask = (np.asarray(examples[k]) for k in LM_KEYS)
    n, width = tokens.shape
    if n < 2:
        raise ValueError(f"KTO's mismatched pairs need at least 2 examples, got {n}")
    offset = int(np.random.default_rng(seed).integers(1, n))
    out = {f"kl_{k}": np.zeros_like(np.asarray(examples[k])) for k in LM_KEYS}
    for i in range(n):
        j = (i + offset) % n
        prompt = tokens[i][(input_mask[i] > 0) & (loss_mask[i] == 0)]
        completion = tokens[j][loss_mask[j] > 0][: width - len(prompt)]
        length = len(prompt) + len(completion)
        out["kl_tokens"][i, :length] = np.concatenate([prompt, completion])
        out["kl_input_mask"][i, :length] = 1
        out["kl_loss_mask"][i, len(prompt) : length] = 1
    return {**examples, **out}


def build_examples(config, mesh):
    """(train, evaluation, task) unpaired examples with their mismatched pairs; the task (a data
    file's, `stage_task`) gives the held-out prompts the evaluation samples."""
    task = stage_task(config)
    check_model_fits_task(config.model, task)
    if config.data.path:
        train, evaluation = (
            {k: v for k, v in task.encoded("unpaired", split).items() if k in (*LM_KEYS, "label")}
            for split in ("train", "eval")
        )
    else:
        u = config.pairs

        def examples(num, seed, split):
            return unpair(
                labels.comparisons(config.labels, task, mesh, num, seed=seed, split=split)
            )

        train = examples(u.num_pairs, config.seed, "train")
        evaluation = examples(u.num_eval_pairs, config.seed + 1, "eval")
    return (
        with_mismatched_pairs(train, config.seed),
        with_mismatched_pairs(evaluation, config.seed + 1),
        task,
    )


def build(config, ctx: Context) -> Stage:
    train, evaluation, task = build_examples(config, ctx.mesh)
    model = build_model(config.model, heads=("lm",))
    params = initial_params(model, config, ctx.mesh, ctx.rngs["init"])
    loss_fn = objectives.unpaired_loss_fn(model, config.loss)
    e = config.eval
    sampled = e.num_prompts > 0  # 0 prompts: no samples
    offline = offline_evaluation(
        model,
        loss_fn,
        evaluation,
        ctx.rngs["eval"],
        task=task,
        prompts=task.prompt_dataset(e.num_prompts, seed=config.seed + 2, split="eval")
        if sampled
        else None,
        max_new_tokens=e.max_new_tokens,
        reference=lambda state: state.ref_params,
    )

    def evaluate(state, policy):
        held_out, samples = offline(state, policy)
        return {
            "loss": float(held_out["loss"]),
            "margin": float(held_out["rewards/margin"]),
            **samples,
        }

    def summarize_run(final, initial, state):
        summary = {
            "loss_name": config.loss.name,
            "steps": int(state.step),
            "initial_eval_loss": initial["loss"],
            "eval_loss": final["loss"],
            "eval_margin": final["margin"],
        }
        if sampled:
            summary.update(
                kl_to_reference=final["policy/kl"], response_length=final["policy/length"]
            )
        if "policy/gold" in final:  # a data file without a verifier has no gold reward
            summary.update(
                initial_gold_reward=initial["policy/gold"], gold_reward=final["policy/gold"]
            )
        return summary

    return Stage(
        label=config.loss.name,
        model=model,
        params=params,
        train=train,
        unit="examples (desirable and undesirable)",
        loss_fn=loss_fn,
        wrap_step=lambda step: objectives.preference_train_step(step, config.loss),
        slots=objectives.preference_state_slots(config.loss, params),
        evaluate=evaluate,
        summarize=summarize_run,
        log_keys=("loss", "rewards/margin"),
        evaluate_initial=True,
    )


KIND = StageKind("kto", build)


def run(config, workdir) -> dict:
    return run_stage(KIND, config, workdir)
