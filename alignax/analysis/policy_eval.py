"""Evaluation of a policy by sampling: gold reward, proxy reward, KL to a reference, length."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from alignax.models import Model, Params
from alignax.rollout import response_outputs
from alignax.sampling import sample


def task_reward(task, tokens, loss_mask, prompts: dict) -> jax.Array:
    """The task's own reward of full sequences: the review task's gold reward, or the arithmetic
    task's exact-match check against `prompts['answer_tokens']`."""
    if hasattr(task, "gold_reward"):
        return task.gold_reward(tokens, loss_mask)
    return task.reward(tokens, loss_mask, prompts["answer_tokens"])


def evaluate_policy(
    model: Model,
    params: Params,
    task,
    prompts: dict,
    rng: jax.Array,
    *,
    max_new_tokens: int,
    ref_params: Params | None = None,
    proxy_fn: Callable | None = None,
    temperature: float = 1.0,
    num_texts: int = 4,
) -> dict:
    """Samples one response per prompt and scores it.

    Returns per-sample arrays 'gold' [N] (and 'proxy' with `proxy_fn(tokens, input_mask) -> [N]`,
    'kl' [N] = log pi(y|x) - log pi_ref(y|x) with `ref_params`, the Monte Carlo k1 estimate of the
    sequence KL), 'length' [N], 'ended_with_eos' [N], and 'texts' (the first `num_texts`).
    """
    out = sample(
        model,
        params,
        prompts["prompt_tokens"],
        prompts["prompt_mask"],
        rng,
        max_new_tokens=max_new_tokens,
        eos_id=task.eos_id,
        temperature=temperature,
    )
    prompt_len = prompts["prompt_tokens"].shape[1]
    response_mask = np.asarray(out.loss_mask[:, prompt_len:])
    result = {
        "gold": np.asarray(task_reward(task, out.tokens, out.loss_mask, prompts)),
        "length": response_mask.sum(1),
        "ended_with_eos": np.asarray(out.ended_with_eos, np.float32),
        "texts": [
            task.decode(row[mask > 0])
            for row, mask in zip(
                np.asarray(out.tokens[:num_texts]), np.asarray(out.input_mask[:num_texts])
            )
        ],
    }
    if proxy_fn is not None:
        result["proxy"] = np.asarray(proxy_fn(out.tokens, out.input_mask))
    if ref_params is not None:
        sequences = (out.tokens, out.input_mask, prompt_len)
        logps = response_outputs(model, params, *sequences)["logps"]
        ref_logps = response_outputs(model, ref_params, *sequences)["logps"]
        result["kl"] = np.sum((np.asarray(logps) - np.asarray(ref_logps)) * response_mask, 1)
    return result


def summarize(result: dict) -> dict[str, float]:
    """Means of the per-sample arrays of `evaluate_policy`."""
    return {k: float(np.mean(v)) for k, v in result.items() if k != "texts"}
