"""Evaluation of a policy by sampling: gold reward, proxy reward, KL to a reference, length, and
how varied the samples are (entropy, distinct-n, self-BLEU)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from alignax import logprobs
from alignax.analysis.diversity import diversity
from alignax.analysis.stats import win_rate
from alignax.checkpoint import restore_params
from alignax.data.batching import chunk_rows
from alignax.models import Model, Params
from alignax.rl.rollout import response_outputs
from alignax.sampling import sample
from alignax.stages import load_stage_model
from alignax.workdir import cached_json, stage_fingerprint

# The studies draw their held-out prompts and sampling key from seed + EVAL_SEED_OFFSET (the stage
# runners evaluate on seed + 1 and seed + 2), and measure a point chosen on that evaluation again
# on a fresh draw, seed + FRESH_SEED_OFFSET.
EVAL_SEED_OFFSET = 100
FRESH_SEED_OFFSET = 300


def task_reward(task, tokens, loss_mask, prompts: dict) -> jax.Array:
    """The task's own reward of full sequences, given the prompt-batch entries it needs
    (`task.reward_inputs`, e.g. the arithmetic task's `answer_tokens`); compiled once per task."""
    inputs = {k: prompts[k] for k in task.reward_inputs}
    return _jitted_reward(task)(tokens, loss_mask, inputs)


@functools.lru_cache(maxsize=16)
def _jitted_reward(task):
    return jax.jit(lambda tokens, mask, inputs: task.reward(tokens, mask, **inputs))


def distinct_held_out_problems(task, num_problems: int, seed: int) -> dict[str, np.ndarray]:
    """`num_problems` distinct prompts of the eval split (the first occurrences in a draw from
    `seed`, in draw order), so that a study's per-problem results line up across seeds and
    policies. Refused, naming the count, when the split holds fewer."""
    draw = task.prompt_dataset(16 * num_problems, seed=seed, split="eval")
    _, first = np.unique(draw["prompt_tokens"], axis=0, return_index=True)
    if len(first) < num_problems:
        raise ValueError(
            f"eval.num_problems={num_problems}, but only {len(first)} distinct held-out problems "
            f"turned up in {16 * num_problems} draws of the eval split"
        )
    rows = np.sort(first)[:num_problems]
    return {k: v[rows] for k, v in draw.items()}


def prompt_texts(task, prompts: dict) -> list[str]:
    """A prompt batch as text ("12+7="), e.g. for the per-problem view in results.json."""
    return [
        task.decode(row[mask > 0])
        for row, mask in zip(prompts["prompt_tokens"], prompts["prompt_mask"])
    ]


def held_out_draw(task, num_prompts: int, seed: int) -> tuple[dict, jax.Array]:
    """`num_prompts` held-out prompts and one sampling key, both drawn from `seed`: evaluating
    several policies on one draw pairs their samples prompt by prompt."""
    return task.prompt_dataset(num_prompts, seed=seed, split="eval"), jax.random.key(seed)


def evaluate_policy(
    model: Model,
    params: Params,
    task,
    prompts: dict,
    rng: jax.Array,
    *,
    max_new_tokens: int,
    ref_params: Params | None = None,
    base_params: Params | None = None,
    proxy_fn: Callable | None = None,
    temperature: float = 1.0,
    num_texts: int = 4,
    monitor: bool = True,
) -> dict:
    """Samples one response per prompt and scores it.

    Returns per-sample arrays 'gold' [N] (when the task has a 'gold_reward'; a data file's
    without a verifier has none), 'proxy' with `proxy_fn(tokens, input_mask) -> [N]`, 'kl' [N] =
    log pi(y|x) - log pi_ref(y|x) with `ref_params` (the Monte Carlo k1 estimate of the sequence
    KL), 'base_nll' [N] with `base_params` (the response's mean per-token negative log-likelihood
    under that policy, e.g. the pretrained base: how natural the text is, whatever the reward
    says), 'length' [N], 'ended_with_eos' [N], 'entropy' [N] (the policy's mean per-token entropy
    on its own response); the batch's 'distinct_1', 'distinct_2' and 'self_bleu' across the
    responses (alignax/analysis/diversity.py: the diversity collapse monitor; `monitor=False`
    leaves out these four, and the forward pass the entropy takes); and 'texts' (the first
    `num_texts`).
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
    per_token = np.maximum(response_mask.sum(1), 1)  # a mean over each response's tokens
    result = {
        "length": response_mask.sum(1),
        "ended_with_eos": np.asarray(out.ended_with_eos, np.float32),
        "texts": [
            task.decode(row[mask > 0])
            for row, mask in zip(
                np.asarray(out.tokens[:num_texts]), np.asarray(out.input_mask[:num_texts])
            )
        ],
    }
    if monitor:
        entropy = _response_entropy(model, params, out.tokens, out.input_mask, prompt_len)
        result["entropy"] = (np.asarray(entropy) * response_mask).sum(1) / per_token
        result.update(diversity(np.asarray(out.tokens[:, prompt_len:]), response_mask))
    if "gold_reward" in task.capabilities:
        result["gold"] = np.asarray(task_reward(task, out.tokens, out.loss_mask, prompts))
    if proxy_fn is not None:
        result["proxy"] = np.asarray(proxy_fn(out.tokens, out.input_mask))
    if ref_params is not None:
        sequences = (out.tokens, out.input_mask, prompt_len)
        logps = _response_logps(model, params, *sequences)
        ref_logps = _response_logps(model, ref_params, *sequences)
        result["kl"] = np.sum((np.asarray(logps) - np.asarray(ref_logps)) * response_mask, 1)
    if base_params is not None:
        base_logps = np.asarray(
            _response_logps(model, base_params, out.tokens, out.input_mask, prompt_len)
        )
        result["base_nll"] = -np.sum(base_logps * response_mask, 1) / per_token
    return result


@functools.partial(jax.jit, static_argnames=("model", "prompt_len"))
def _response_logps(model: Model, params: Params, tokens, input_mask, prompt_len: int):
    return response_outputs(model, params, tokens, input_mask, prompt_len)["logps"]


@functools.partial(jax.jit, static_argnames=("model", "prompt_len"))
def _response_entropy(model: Model, params: Params, tokens, input_mask, prompt_len: int):
    # Its own program, so that the logps above compile (and round) as they always did.
    return response_outputs(model, params, tokens, input_mask, prompt_len)["entropy"]


def on_fresh_draw(
    model: Model,
    policies: dict[str, Params],
    ref_params: Params,
    task,
    *,
    seed: int,
    num_prompts: int,
    max_new_tokens: int,
    monitor: bool,
) -> dict[str, dict]:
    """{label: `evaluate_policy` result}: every policy of `policies` answers `num_prompts`
    held-out prompts of the fresh draw of `seed` (seed + FRESH_SEED_OFFSET) with one sampling
    key, so their samples pair prompt by prompt; KL to `ref_params`."""
    prompts, rng = held_out_draw(task, num_prompts, seed + FRESH_SEED_OFFSET)
    return {
        label: evaluate_policy(
            model,
            params,
            task,
            prompts,
            rng,
            max_new_tokens=max_new_tokens,
            ref_params=ref_params,
            monitor=monitor,
        )  # fmt: skip
        for label, params in policies.items()
    }


def on_fresh_prompts(
    sft_dir: Path,
    run_dir: Path,
    steps: dict[str, int | None],
    *,
    task,
    seed: int,
    num_prompts: int,
    max_new_tokens: int,
    mesh: Mesh,
    cache: Path,
) -> dict[str, dict[str, np.ndarray]]:
    """A point chosen on a study's evaluations (a peak, a best run), measured again where it was
    not chosen: the SFT policy of `sft_dir` ('sft') and the checkpoints of the run in `run_dir`
    at `steps` ({label: step}; None: the latest) each answer `num_prompts` held-out prompts of the
    fresh draw of `seed` (seed + FRESH_SEED_OFFSET) with one sampling key, so every policy's
    samples pair prompt by prompt. Returns {label: {'gold': [N], 'kl': [N]}} (KL to the SFT
    policy; an RL run's checkpoints hold its policy beside its value model). The result is kept
    in `cache` (a JSON file) for exactly these checkpoints of this run, this SFT policy and these
    settings, and read back on the next call."""

    def measure() -> dict:
        model, sft = load_stage_model(sft_dir, heads=("lm",), mesh=mesh)
        policies = {"sft": sft}
        for label, step in steps.items():
            policies[label] = restore_params(run_dir / "checkpoints", sft, step=step)
        answers = on_fresh_draw(
            model, policies, sft, task, seed=seed, num_prompts=num_prompts,
            max_new_tokens=max_new_tokens, monitor=False,
        )  # fmt: skip
        return {k: {"gold": r["gold"].tolist(), "kl": r["kl"].tolist()} for k, r in answers.items()}

    key = {
        "steps": steps,
        "run": stage_fingerprint(run_dir),
        "sft": stage_fingerprint(sft_dir),
        "settings": [seed, num_prompts, max_new_tokens],
    }
    result = cached_json(cache, key, measure)
    return {k: {m: np.asarray(v) for m, v in r.items()} for k, r in result.items()}


@functools.partial(jax.jit, static_argnames="model")
def sequence_kl(model: Model, params: Params, ref_params: Params, tokens, input_mask, loss_mask):
    """log pi(y|x) - log pi_ref(y|x) over each row's masked (response) tokens, [N]: where the
    rows are samples of pi, their mean is the Monte Carlo (k1) estimate of the sequence KL."""

    def logps(p):
        logits = model.apply(p, tokens, input_mask, heads=("lm",))["logits"]
        return logprobs.sequence_logps(logits, tokens, loss_mask)["sum"]

    return logps(params) - logps(ref_params)


def pretraining_nll(model: Model, params: Params, texts: dict) -> jax.Array:
    """Per-token NLL of pretraining-distribution texts (tokens, input_mask, loss_mask; every
    scored token pooled): the alignment tax of a policy is its NLL minus its SFT policy's."""
    logits = model.apply(params, texts["tokens"], texts["input_mask"], heads=("lm",))["logits"]
    seq = logprobs.sequence_logps(logits, texts["tokens"], texts["loss_mask"])
    return -jnp.sum(seq["sum"]) / jnp.maximum(jnp.sum(seq["count"]), 1.0)


def summarize(result: dict) -> dict[str, float]:
    """Means of the per-sample arrays of `evaluate_policy` (its batch values as they are), and
    the standard errors of the gold and proxy means."""
    out = {k: float(np.mean(v)) for k, v in result.items() if k != "texts"}
    for key in ("gold", "proxy"):
        if key in result:
            out[f"{key}_se"] = float(np.std(result[key]) / np.sqrt(len(result[key])))
    return out


def versus_sft(results: dict[str, dict], reference: str = "sft") -> dict[str, dict[str, float]]:
    """The studies' policy table, from `evaluate_policy` results of several policies on the same
    prompts with the same key (KL to the reference policy, `ref_params`): per policy, mean gold,
    win rate against the reference (gold decides, ties count half), KL, length, share ended with
    EOS, the length-controlled gold (`length_controlled_gold`), and the NLL under the base policy
    where the results have it (`base_params`)."""
    controlled = length_controlled_gold(results, reference)
    sft = results[reference]
    return {
        name: {
            "gold_reward": float(r["gold"].mean()),
            "gold_length_controlled": controlled[name],
            "win_rate_vs_sft": win_rate(r["gold"], sft["gold"]),
            "kl_to_sft": float(r["kl"].mean()),
            "response_length": float(r["length"].mean()),
            "ended_with_eos": float(r["ended_with_eos"].mean()),
            **({"base_nll": float(r["base_nll"].mean())} if "base_nll" in r else {}),
        }
        for name, r in results.items()
    }


def length_controlled_gold(results: dict[str, dict], reference: str = "sft") -> dict[str, float]:
    """Each policy's mean gold adjusted to the reference policy's mean response length: the
    adjusted means of an analysis of covariance, gold ~ policy + slope * length, with one slope
    pooled within policies over every policy in `results`:
    mean_gold_p - slope * (mean_length_p - mean_length_reference).

    A policy that is better only by answering longer (or, where the gold reward punishes a
    response that never ends, only by ending) keeps less of its lead here. With no length
    variation within any policy the slope is undefined and the raw means are returned."""
    centred = {
        name: (r["length"] - r["length"].mean(), r["gold"] - r["gold"].mean())
        for name, r in results.items()
    }
    spread = sum(float(np.sum(x * x)) for x, _ in centred.values())
    slope = sum(float(np.sum(x * y)) for x, y in centred.values()) / spread if spread else 0.0
    target = float(results[reference]["length"].mean())
    return {
        name: float(r["gold"].mean() - slope * (r["length"].mean() - target))
        for name, r in results.items()
    }


def _chunks(arrays: dict, chunk_size: int):
    """(start, stop, chunk) with every chunk padded to `chunk_size` rows (one compiled shape);
    padding rows repeat the first row."""
    total = len(next(iter(arrays.values())))
    for start in range(0, total, chunk_size):
        stop = min(start + chunk_size, total)
        rows = np.concatenate([np.arange(start, stop), np.full(chunk_size - (stop - start), 0)])
        yield start, stop, {k: v[rows] for k, v in arrays.items()}


def sample_pool(
    model: Model,
    params: Params,
    task,
    prompts: dict,
    rng: jax.Array,
    *,
    pool_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    chunk_size: int = 2048,
    first_row: int = 0,
) -> dict[str, np.ndarray]:
    """`pool_size` samples of the policy per prompt at `temperature`, with their gold reward
    (the task's reward).

    The rows from `start` are drawn with key fold_in(rng, first_row + start): a pool sampled in
    parts, each with `first_row` = its first row's index in the whole, is the whole pool's
    (when every part has a multiple of `chunk_size` rows).

    Returns tokens / input_mask / loss_mask [P * N, S] (prompt p's samples in rows
    p*N .. p*N+N-1), gold [P, N], and response_ids [P, N]: equal ids mark identical responses to
    the same prompt (for the pool estimate of best-of-n's KL).
    """
    num_prompts = len(prompts["prompt_tokens"])
    keys = ("prompt_tokens", "prompt_mask", *task.reward_inputs)
    repeated = {k: np.repeat(prompts[k], pool_size, axis=0) for k in keys}
    out = {"tokens": [], "input_mask": [], "loss_mask": [], "gold": []}
    rows = num_prompts * pool_size  # a smaller pool is one chunk of its own size
    for start, stop, chunk in _chunks(repeated, min(chunk_size, rows)):
        samples = sample(
            model,
            params,
            chunk["prompt_tokens"],
            chunk["prompt_mask"],
            jax.random.fold_in(rng, first_row + start),
            max_new_tokens=max_new_tokens,
            eos_id=task.eos_id,
            temperature=temperature,
        )
        for key in ("tokens", "input_mask", "loss_mask"):
            out[key].append(np.asarray(getattr(samples, key))[: stop - start])
        gold = task_reward(task, samples.tokens, samples.loss_mask, chunk)
        out["gold"].append(np.asarray(gold)[: stop - start])
    pool = {k: np.concatenate(v) for k, v in out.items()}
    pool["gold"] = pool["gold"].astype(np.float64).reshape(num_prompts, pool_size)
    responses = (pool["tokens"] * pool["loss_mask"]).reshape(num_prompts, pool_size, -1)
    pool["response_ids"] = np.stack(
        [np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1) for rows in responses]
    )
    return pool


def score_in_chunks(score_fn: Callable, tokens, mask, chunk_size: int, **more) -> np.ndarray:
    """score_fn(tokens [C, S], mask [C, S], **more) -> [..., C], applied in fixed-size chunks of
    rows (`data.batching.chunk_rows`): [..., rows] (e.g. [members, rows] for an ensemble
    scorer). `more`: other [rows, ...] arrays the scorer reads, chunked alike (e.g. a process
    reward model's step mask)."""
    arrays = {"tokens": tokens, "mask": mask, **more}
    scores = [
        np.asarray(score_fn(chunk.pop("tokens"), chunk.pop("mask"), **chunk))[..., : stop - start]
        for start, stop, chunk in _chunks(arrays, chunk_rows(len(tokens), chunk_size))
    ]
    return np.concatenate(scores, axis=-1).astype(np.float64)


def score_pairs(score_fn: Callable, params, pairs: dict, chunk_size: int = 4096) -> np.ndarray:
    """Every member's reward of every response of `pairs` (`tokens`/`input_mask` [N, K, L]):
    [M, N, K], from a member scorer (`sweeps.make_member_scorer`) in chunks of responses."""
    n, k, length = pairs["tokens"].shape
    rows = score_in_chunks(
        lambda t, m: score_fn(params, t, m),
        pairs["tokens"].reshape(n * k, length),
        pairs["input_mask"].reshape(n * k, length),
        chunk_size,
    )
    return rows.reshape(-1, n, k)
