"""On-device rollouts for the RL loops: sample responses, then score them with every model the
update needs, all inside the caller's jit.

Prompts are left-padded to a common length P, so the response occupies the fixed slice [P, P+T)
of every sequence; per-token quantities here are that slice ([B, T]), aligned with the response
tokens (entry t belongs to response token t). Values are read from the hidden state *before*
each response token, i.e. V(prefix) estimates the return of generating token t onwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from alignax import logprobs, schema
from alignax.models import Model, Params
from alignax.sampling import sample


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """What an RL experiment samples, the `rollout` section of every PPO / GRPO config:
    `RolloutConfig.from_config(config.rollout)`. `num_prompts` sizes the task's train prompt set
    (the held-out one is the stage's `eval.num_prompts`); the step reads the rest."""

    num_prompts: int = 4096  # training prompts (the task's train split), cycled in batches
    max_new_tokens: int = 24
    temperature: float = 1.0
    group_size: int = 1  # samples per prompt: 1 for PPO, G >= 2 for GRPO / RLOO

    def __post_init__(self):
        for key in ("num_prompts", "max_new_tokens", "group_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"rollout.{key}={getattr(self, key)!r}: must be at least 1")
        if not self.temperature > 0:
            raise ValueError(
                f"rollout.temperature={self.temperature!r}: must be > 0 (the update's log-probs "
                "are those of the sampling distribution)"
            )

    @classmethod
    def from_config(cls, config, prefix: str = "rollout") -> RolloutConfig:
        return schema.frozen(cls, config, prefix)


def default_rollout_config():
    """The `rollout` ConfigDict section: every `RolloutConfig` field at its default."""
    return schema.section(RolloutConfig())


class Rollout(NamedTuple):
    tokens: jax.Array  # [B, P+T] prompt + response
    input_mask: jax.Array  # [B, P+T]
    response_mask: jax.Array  # [B, T] response tokens up to and including EOS
    logps: jax.Array  # [B, T] policy log-probs (teacher-forced, temperature 1)
    ref_logps: jax.Array  # [B, T] reference log-probs
    entropy: jax.Array  # [B, T] policy entropy at each response token
    values: jax.Array  # [B, T] value estimates, zeros when there is no value model
    scores: jax.Array  # [B] score of each full response (reward model, gold or verifier)
    ended_with_eos: jax.Array  # [B] bool


def response_slice(x_BxS: jax.Array, prompt_len: int) -> jax.Array:
    return x_BxS[:, prompt_len:]


def full_loss_mask(rollout: Rollout) -> jax.Array:
    """The response mask over whole sequences [B, P+T] (the layout scorers take)."""
    prompt_len = rollout.tokens.shape[1] - rollout.response_mask.shape[1]
    return jnp.pad(rollout.response_mask, ((0, 0), (prompt_len, 0)))


def response_outputs(
    model: Model, params: Params, tokens, input_mask, prompt_len: int, heads=("lm",)
) -> dict[str, jax.Array]:
    """Per-response-token outputs [B, T] of one forward pass: with 'lm', the 'logps' and
    'entropy' of the response tokens at temperature 1; with 'value', the 'values'
    V(prefix before response token t), i.e. the value head's values[:, P-1 : P+T-1]."""
    out = model.apply(params, tokens, input_mask, heads=heads)
    result = {}
    if "lm" in heads:
        result["logps"] = response_slice(logprobs.token_logps(out["logits"], tokens), prompt_len)
        result["entropy"] = response_slice(logprobs.token_entropy(out["logits"]), prompt_len)
    if "value" in heads:
        result["values"] = out["values"][:, prompt_len - 1 : -1]
    return result


ResponseFn = Callable[..., dict]
"""`fn(params, tokens [B, P+T], input_mask, prompt_len) -> {'logps', 'entropy', 'values'}` [B, T]:
what an algorithm's forward pass reads off the response, from the params it trains."""


def policy_response_fn(policy: Model) -> ResponseFn:
    """The policy's log-probs and entropy (`params` are the policy's); no critic, values 0."""

    def fn(params, tokens, input_mask, prompt_len):
        out = response_outputs(policy, params, tokens, input_mask, prompt_len)
        return {**out, "values": jnp.zeros_like(out["logps"])}

    return fn


def actor_critic_response_fn(policy: Model, value_model: Model | None) -> ResponseFn:
    """Log-probs, entropy and values from params {'policy': ..., 'value': ...}. With
    `value_model=None` the critic is a value head on the policy (params {'policy': ...}), and one
    forward pass gives all three."""
    if value_model is None:
        if "value" not in policy.heads:
            raise ValueError(
                f"value_model=None needs a policy with a value head, got heads {policy.heads}"
            )

        def shared(params, tokens, input_mask, prompt_len):
            sequences = (tokens, input_mask, prompt_len)
            return response_outputs(policy, params["policy"], *sequences, heads=("lm", "value"))

        return shared

    def separate(params, tokens, input_mask, prompt_len):
        sequences = (tokens, input_mask, prompt_len)
        out = response_outputs(policy, params["policy"], *sequences)
        values = response_outputs(value_model, params["value"], *sequences, heads=("value",))
        return {**out, "values": values["values"]}

    return separate


def collect(
    *,
    policy: Model,
    params: Params,
    policy_params: Params,
    ref_params: Params,
    response_fn: ResponseFn,
    prompts: dict,
    rng: jax.Array,
    score_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    max_new_tokens: int,
    eos_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> Rollout:
    """Samples one response per prompt from `policy` at `policy_params`, reads log-probs,
    entropy and values with `response_fn(params, ...)` and the reference log-probs at
    `ref_params`, and scores each response with
    `score_fn(tokens [B, P+T], input_mask, loss_mask) -> [B]` (loss_mask marks the response)."""
    samples = sample(
        policy,
        policy_params,
        prompts["prompt_tokens"],
        prompts["prompt_mask"],
        rng,
        max_new_tokens=max_new_tokens,
        eos_id=eos_id,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
    )
    samples = jax.tree.map(jax.lax.stop_gradient, samples)
    prompt_len = prompts["prompt_tokens"].shape[1]
    sequences = (samples.tokens, samples.input_mask, prompt_len)
    out = response_fn(params, *sequences)
    ref_logps = response_outputs(policy, ref_params, *sequences)["logps"]
    response_mask = response_slice(samples.loss_mask, prompt_len).astype(jnp.float32)
    return jax.lax.stop_gradient(
        Rollout(
            tokens=samples.tokens,
            input_mask=samples.input_mask,
            response_mask=response_mask,
            logps=out["logps"] * response_mask,
            ref_logps=ref_logps * response_mask,
            entropy=out["entropy"] * response_mask,
            values=out["values"] * response_mask,
            scores=score_fn(samples.tokens, samples.input_mask, samples.loss_mask),
            ended_with_eos=samples.ended_with_eos,
        )
    )
