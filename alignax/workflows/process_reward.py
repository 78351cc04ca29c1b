"""Process (and outcome) reward models on multi-step solutions, labelled step by step.

The solutions are samples of the policy in `labels.policy_from` (the SFT stage) to training
problems, or the task's reference solutions with a digit of a random step changed in a share
`process.corruption_rate` of them (`process.solutions="references"`: errors of a known kind and
rate, no policy needed); each step is labelled (`process.label_source`) by the task's step checker
("checker": Lightman et al. 2023's step annotation), by the share of `process.num_rollouts`
rollouts of that policy from the step that the verifier accepts ("monte_carlo": Wang et al.
2024, Math-Shepherd), or only the last step, by the verifier ("outcome": an outcome reward
model on the same solutions). A value head scores every token; the loss is the per-step
cross-entropy at each step's last token (`losses.reward.process_reward_loss`). Held out, on
solutions to held-out problems: the step accuracy against the checker and the AUC of the
solution score (`process.solution_score`: min, product or last over the steps) for telling
verified solutions from the rest.
"""

from __future__ import annotations

import jax
import numpy as np

from alignax import labels
from alignax.analysis.stats import win_rate
from alignax.data.layouts import LM_KEYS
from alignax.experiment import check_model_fits_task, initial_params
from alignax.losses.reward import SOLUTION_SCORES, process_reward_loss, solution_scores
from alignax.models import build_model
from alignax.stages import load_stage_model
from alignax.tasks import get_task, require
from alignax.workflows.runner import Context, Stage, StageKind, run_stage

LABEL_SOURCES = ("checker", "monte_carlo", "outcome")
SOLUTIONS = ("policy", "references")
MODEL_INPUTS = (*LM_KEYS, "step_mask", "step_labels")


def corrupted_references(task, problems, rate: float, rng) -> list[list[int]]:
    """The reference solutions of `problems` ((prompt, solution) strings), each with one digit
    of a random step changed with probability `rate` (to the checker that step is wrong, and
    usually the next one, which does not follow from it), with EOS."""
    out = []
    for _, solution in problems:
        steps = solution.split("=")
        if rng.random() < rate:
            j = rng.integers(len(steps))
            digits = [k for k, ch in enumerate(steps[j]) if ch.isdigit()]
            k = digits[rng.integers(len(digits))]
            new = str((int(steps[j][k]) + rng.integers(1, 10)) % 10)
            steps[j] = steps[j][:k] + new + steps[j][k + 1 :]
        out.append([*task.encode_text("=".join(steps)), task.eos_id])
    return out


def solutions(config, task, policy, n: int, *, seed: int, split: str) -> dict[str, np.ndarray]:
    """`n` solutions to problems of `split` (`process.solutions`: sampled from `policy`, or the
    references with corrupted steps), in the step layout with labels from
    `process.label_source`; for evaluation, `checked` and `checked_mask` (the checker's label
    of every step) and `verified` [n] (the verifier's outcome)."""
    model, params = policy
    rng = np.random.default_rng([seed, 11])
    key = jax.random.key(seed)
    sampling = {  # the solutions and their rollouts alike
        "max_new_tokens": config.labels.max_new_tokens,
        "temperature": config.labels.temperature,
    }
    if config.process.solutions == "references":
        problems = task.sample_problems(n, rng, split=split)
        prompts = [task.encode_text(prompt) for prompt, _ in problems]
        responses = corrupted_references(task, problems, config.process.corruption_rate, rng)
    else:
        prompts = task.sample_prompts(n, rng, split=split)
        responses = labels.policy_responses(model, params, task, prompts, key, **sampling)
    checked = labels.step_layout(
        task,
        prompts,
        responses,
        [task.step_labels(p, r) for p, r in zip(prompts, responses, strict=True)],
    )
    source = config.process.label_source
    if source == "monte_carlo":
        complete = labels.policy_completer(
            model, params, task, jax.random.fold_in(key, 1), **sampling
        )
        step_labels = labels.monte_carlo_step_labels(
            task, prompts, responses, complete, config.process.num_rollouts
        )
        out = labels.step_layout(task, prompts, responses, step_labels)
    else:
        out = dict(checked)
    out["checked"], out["checked_mask"] = checked["step_labels"], checked["step_mask"]
    out["verified"] = np.array(
        [task.verified(r, task.answer_of(p)) for p, r in zip(prompts, responses, strict=True)],
        np.float32,
    )
    if source == "outcome":  # the verifier's outcome, at the last step only
        rows = np.arange(n)
        last = out["step_mask"].shape[1] - 1 - np.argmax(out["step_mask"][:, ::-1], axis=1)
        out["step_mask"] = np.zeros_like(out["step_mask"])
        out["step_labels"] = np.zeros_like(out["step_labels"])
        out["step_mask"][rows, last] = 1
        out["step_labels"][rows, last] = out["verified"]
    return out


def build_data(config, mesh):
    """(train, evaluation) labelled solutions (`solutions`) to training and held-out problems;
    the policy in `labels.policy_from` is loaded where it writes or completes them."""
    task = get_task(config.task_name, config.task)
    require(task, "step_labels", by=f"the process_reward stage on task {config.task_name!r}")
    check_model_fits_task(config.model, task)
    p = config.process
    if p.label_source not in LABEL_SOURCES:
        raise ValueError(f"process.label_source={p.label_source!r}; allowed: {LABEL_SOURCES}")
    if p.solution_score not in SOLUTION_SCORES:
        raise ValueError(f"process.solution_score={p.solution_score!r}; allowed: {SOLUTION_SCORES}")
    if p.solutions not in SOLUTIONS:
        raise ValueError(f"process.solutions={p.solutions!r}; allowed: {SOLUTIONS}")
    if not config.labels.policy_from and (
        p.solutions == "policy" or p.label_source == "monte_carlo"
    ):
        raise ValueError(
            f"process.solutions={p.solutions!r} with process.label_source={p.label_source!r} "
            "needs labels.policy_from: the workdir of the policy that writes or completes the "
            "solutions (the SFT stage)"
        )
    policy = (
        load_stage_model(config.labels.policy_from, heads=("lm",), mesh=mesh)
        if config.labels.policy_from
        else (None, None)
    )
    train = solutions(config, task, policy, p.num_solutions, seed=config.seed, split="train")
    evaluation = solutions(
        config, task, policy, p.num_eval_solutions, seed=config.seed + 1, split="eval"
    )
    return train, evaluation


def solution_auc(scores, verified) -> float:
    """P(a verified solution scores above one that is not), ties half; nan without both."""
    scores, verified = np.asarray(scores), np.asarray(verified) > 0
    if verified.all() or not verified.any():
        return float("nan")
    return win_rate(scores[verified][:, None], scores[~verified][None, :])


def make_evaluator(model, data: dict, solution_score: str):
    """params -> held-out metrics: the loss on the stage's own labels, the step accuracy against
    the checker, and the AUC of the solution scores against the verifier."""
    values = jax.jit(
        lambda params: model.apply(params, data["tokens"], data["input_mask"], heads=("value",))[
            "values"
        ]
    )

    def evaluate(params) -> dict[str, float]:
        z = values(params)
        loss, metrics = process_reward_loss(z, data["step_mask"], data["step_labels"])
        _, checker = process_reward_loss(z, data["checked_mask"], data["checked"])
        scores = solution_scores(z, data["checked_mask"], solution_score)
        return {
            "loss": float(loss),
            "label": float(metrics["label"]),
            "step_accuracy": float(checker["step_accuracy"]),
            "solution_auc": solution_auc(scores, data["verified"]),
            "verified": float(np.mean(data["verified"])),
        }

    return evaluate


def build(config, ctx: Context) -> Stage:
    train, evaluation = build_data(config, ctx.mesh)
    model = build_model(config.model, heads=("value",))
    params = initial_params(model, config, ctx.mesh, ctx.rngs["init"])

    def loss_fn(params, state, batch, rng):
        del state, rng
        z = model.apply(params, batch["tokens"], batch["input_mask"], heads=("value",))["values"]
        return process_reward_loss(z, batch["step_mask"], batch["step_labels"])

    evaluate = make_evaluator(model, evaluation, config.process.solution_score)
    return Stage(
        label="process_reward",
        model=model,
        params=params,
        train={k: train[k] for k in MODEL_INPUTS},
        unit="solutions",
        loss_fn=loss_fn,
        evaluate=lambda state, params: evaluate(params),
        summarize=lambda final, initial, state: {"steps": int(state.step), **final},
        log_keys=("loss", "step_accuracy"),
        # Under LoRA the new value head trains in full beside the adapters.
        lora_heads=tuple(k for k in params if k.startswith("value_")),
    )


KIND = StageKind("process_reward", build, rng_streams=("init", "train"))


def run(config, workdir) -> dict:
    return run_stage(KIND, config, workdir)
