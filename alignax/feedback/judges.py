"""Judges: models of a labeller that return P(a is preferred to b) for pairs of responses.

A judge is any callable `judge(pairs) -> p_N` (float64 numpy). `pairs` is the comparisons layout
of docs/conventions.md with K = 2 and *no labels*: `tokens`, `input_mask`, `loss_mask`
[N, 2, L]; option 0 is response a and option 1 is response b to the same prompt, so one batch
carries (prompts, responses_a, responses_b). `encode_pairs(task, prompts, a, b)` builds it from
token-id lists. Every judge here is a plain object of that shape, so wrappers compose:

    judge = Debiased(PositionBiased(RewardModelJudge.from_stage(rm_dir, mesh=mesh), bias=0.5))
    p_N = judge(encode_pairs(task, prompts, responses_a, responses_b))

Position bias (a judge that prefers whichever response is shown first) is measured by asking
again with the order swapped (`position_bias`) and removed by averaging both orders
(`Debiased`); `JudgeEnsemble` averages several judges and reports their disagreement (the
standard deviation of the members' probabilities) as uncertainty.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import jax
import numpy as np
from jax.sharding import Mesh

from alignax import objectives
from alignax.models import Model, Params
from alignax.stages import load_stage_model

PAIR_KEYS = ("tokens", "input_mask", "loss_mask")
_EPS = 1e-12


class Judge(Protocol):
    def __call__(self, pairs: dict) -> np.ndarray:
        """P(option 0 preferred to option 1), [N] float64 in [0, 1]."""


def encode_pairs(
    task, prompts: Sequence[Sequence[int]], responses_a, responses_b
) -> dict[str, np.ndarray]:
    """Unlabelled pairs [N, 2, L] (option 0 = a, option 1 = b) in the task's SFT encoding."""
    if not len(prompts) == len(responses_a) == len(responses_b):
        raise ValueError(
            f"encode_pairs: {len(prompts)} prompts, {len(responses_a)} responses a and "
            f"{len(responses_b)} responses b; the three must have the same length"
        )
    rows = task.encode(
        [p for p in prompts for _ in range(2)],
        [r for pair in zip(responses_a, responses_b) for r in pair],
    )
    return {k: v.reshape(len(prompts), 2, -1) for k, v in rows.items()}


def swap(pairs: dict) -> dict:
    """The same pairs shown in the other order: every [N, 2, ...] entry reversed on axis 1
    (entries of other shapes, e.g. a per-pair margin, are dropped: their meaning would flip)."""
    return {k: v[:, ::-1] for k, v in pairs.items() if np.ndim(v) >= 2 and np.shape(v)[1] == 2}


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


def hard_labels(p_N, rng: np.random.Generator | None = None) -> np.ndarray:
    """[N] bool, True where a is chosen: a when P >= 0.5 (no rng), or a Bernoulli(P) draw."""
    p_N = np.asarray(p_N, np.float64)
    return p_N >= 0.5 if rng is None else rng.random(p_N.shape) < p_N


def _chunked(fn: Callable, pairs: dict, chunk_size: int) -> np.ndarray:
    """fn(chunk) -> [n, ...] over row chunks, each padded to `chunk_size` rows (one compiled
    shape; padding rows repeat row 0 and are dropped)."""
    total = len(pairs["tokens"])
    out = []
    for start in range(0, total, chunk_size):
        stop = min(start + chunk_size, total)
        rows = np.concatenate([np.arange(start, stop), np.zeros(chunk_size - stop + start, int)])
        out.append(np.asarray(fn({k: pairs[k][rows] for k in PAIR_KEYS}))[: stop - start])
    return np.concatenate(out) if out else np.zeros((0,))


# ----------------------------------------------------------------------------- built-in judges
@dataclasses.dataclass(frozen=True, eq=False)
class RewardModelJudge:
    """P(a > b) = sigmoid((r(a) - r(b)) / temperature) under a trained reward model (the
    Bradley-Terry model the reward model was fitted with)."""

    model: Model
    params: Params
    temperature: float = 1.0
    chunk_size: int = 256

    @classmethod
    def from_stage(cls, workdir: str | Path, *, mesh: Mesh, **kwargs) -> RewardModelJudge:
        """The judge of the reward-model stage in `workdir` (alignax/workflows/reward_model.py)."""
        model, params = load_stage_model(workdir, heads=("reward",), mesh=mesh)
        return cls(model, params, **kwargs)

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"RewardModelJudge.temperature={self.temperature} must be > 0")
        score = lambda params, batch: objectives.comparison_rewards(self.model, params, batch)
        object.__setattr__(self, "_score", jax.jit(score))

    def rewards(self, pairs: dict) -> np.ndarray:
        """[N, 2] reward-model scores of a and b."""
        return _chunked(lambda b: self._score(self.params, b), pairs, self.chunk_size)

    def __call__(self, pairs: dict) -> np.ndarray:
        r = self.rewards(pairs).astype(np.float64)
        return sigmoid((r[:, 0] - r[:, 1]) / self.temperature)


@dataclasses.dataclass(frozen=True, eq=False)
class SelfJudge:
    """A policy judging its own kind of samples by its log-likelihood of a verdict.

    In CAI's feedback model the policy reads "which response is more <principle>? (A) ... (B)"
    and the verdict is its probability of "A" against "B". The review language has no words
    for such a question, so here the verdict is the choice of continuation itself, conditioned
    on the principle: the context is BOS, the `principle_tokens` (word ids of the task, e.g.
    "excellent" for the sentiment principle), then the prompt, and the verdict "a" is scored by

        s(x) = log pi(x | BOS, principle_tokens, prompt)              summed over the response
               tokens of x (its closing EOS included), divided by their number when
               `length_normalize` (a per-token verdict, not biased towards short responses),
               minus the same score without the principle tokens when `contrastive` (so only
               what the principle changes counts: a pointwise mutual information);

        P(a > b) = exp(s(a)/T) / (exp(s(a)/T) + exp(s(b)/T)) = sigmoid((s(a) - s(b)) / T),

    the two-way softmax over the verdicts "continue with a" and "continue with b". With no
    principle tokens it is the policy's plain likelihood preference. Pairs must start each row
    with BOS on its first real position (as `task.encode` writes them).
    """

    model: Model
    params: Params
    principle_tokens: tuple[int, ...] = ()
    temperature: float = 1.0
    length_normalize: bool = True
    contrastive: bool = False
    chunk_size: int = 256

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"SelfJudge.temperature={self.temperature} must be > 0")
        if self.contrastive and not self.principle_tokens:
            raise ValueError("SelfJudge(contrastive=True) needs principle_tokens")
        logps = jax.jit(lambda params, batch: objectives.option_logps(self.model, params, batch))
        object.__setattr__(self, "_logps", logps)

    def scores(self, pairs: dict) -> np.ndarray:
        """[N, 2] verdict scores s(a), s(b) as defined in the class docstring."""
        scores = self._conditional_scores(with_principle(pairs, self.principle_tokens))
        if self.contrastive:
            scores = scores - self._conditional_scores(pairs)
        return scores

    def _conditional_scores(self, pairs: dict) -> np.ndarray:
        both = _chunked(
            lambda b: np.stack(jax.device_get(self._logps(self.params, b)), axis=-1),
            pairs,
            self.chunk_size,
        ).astype(np.float64)  # [N, 2 options, (sum, count)]
        total, count = both[..., 0], both[..., 1]
        return total / np.maximum(count, 1.0) if self.length_normalize else total

    def __call__(self, pairs: dict) -> np.ndarray:
        s = self.scores(pairs)
        return sigmoid((s[:, 0] - s[:, 1]) / self.temperature)


def with_principle(pairs: dict, principle_tokens: Sequence[int]) -> dict:
    """Pairs with `principle_tokens` inserted after each row's first real token (its BOS); the
    inserted tokens are real (input_mask 1) and never scored (loss_mask 0)."""
    k = len(principle_tokens)
    if k == 0:
        return {key: pairs[key] for key in PAIR_KEYS}
    tokens, input_mask, loss_mask = (np.asarray(pairs[key]) for key in PAIR_KEYS)
    *lead, length = tokens.shape
    first = np.argmax(input_mask > 0, axis=-1)[..., None]  # [N, 2, 1] position of BOS
    position = np.arange(length + k)
    source = np.where(position <= first, position, np.maximum(position - k, 0))
    inserted = (position > first) & (position <= first + k)
    principle = np.asarray(principle_tokens, tokens.dtype)[np.clip(position - first - 1, 0, k - 1)]
    gather = lambda x: np.take_along_axis(x, np.broadcast_to(source, (*lead, length + k)), -1)
    return {
        "tokens": np.where(inserted, principle, gather(tokens)),
        "input_mask": np.where(inserted, 1, gather(input_mask)).astype(input_mask.dtype),
        "loss_mask": np.where(inserted, 0, gather(loss_mask)).astype(loss_mask.dtype),
    }


# ----------------------------------------------------------------------------- position bias
@dataclasses.dataclass(frozen=True, eq=False)
class PositionBiased:
    """`judge` with a known position bias: logit P'(a > b) = logit P(a > b) + bias, so a
    positive bias favours whichever response is shown first (for tests and studies of
    debiasing)."""

    judge: Judge
    bias: float = 0.0

    def __call__(self, pairs: dict) -> np.ndarray:
        return sigmoid(logit(self.judge(pairs)) + self.bias)


def position_bias(judge: Judge, pairs: dict) -> dict[str, float]:
    """How much `judge` favours the first position, from asking in both orders.

    With p = P(a > b) shown (a, b) and q = P(b > a) shown (b, a), an order-consistent judge has
    p + q = 1. Returns
      logit_bias       mean of (logit p + logit q) / 2: exactly `bias` for `PositionBiased`;
      first_preferred  mean of (p + q) / 2: the probability of preferring the first shown
                       response, 0.5 without bias;
      consistency      share of pairs whose verdict survives the swap ((p > 0.5) == (q < 0.5)).
    """
    p, q = judge(pairs), judge(swap(pairs))
    return {
        "logit_bias": float(np.mean((logit(p) + logit(q)) / 2)),
        "first_preferred": float(np.mean((p + q) / 2)),
        "consistency": float(np.mean((p > 0.5) == (q < 0.5))),
    }


DEBIAS_AVERAGES = ("probability", "logit")


@dataclasses.dataclass(frozen=True, eq=False)
class Debiased:
    """`judge` asked in both orders and averaged: (p + 1 - q) / 2 ("probability"), or
    sigmoid((logit p - logit q) / 2) ("logit", which removes a constant logit bias exactly).
    Either way swapping a and b gives 1 minus the result (order-consistent by construction)."""

    judge: Judge
    average: str = "probability"

    def __post_init__(self):
        if self.average not in DEBIAS_AVERAGES:
            raise ValueError(f"Debiased.average={self.average!r}; allowed: {DEBIAS_AVERAGES}")

    def __call__(self, pairs: dict) -> np.ndarray:
        p, q = self.judge(pairs), self.judge(swap(pairs))
        if self.average == "probability":
            return (p + 1.0 - q) / 2
        return sigmoid((logit(p) - logit(q)) / 2)


# ----------------------------------------------------------------------------- ensembles
@dataclasses.dataclass(frozen=True, eq=False)
class JudgeEnsemble:
    """Weighted mean of its members' probabilities; `disagreement` is their weighted standard
    deviation (0 when all agree), the uncertainty targeted feedback can route on."""

    members: tuple[Judge, ...]
    weights: tuple[float, ...] | None = None

    def __post_init__(self):
        if not self.members:
            raise ValueError("JudgeEnsemble needs at least one member")
        w = np.ones(len(self.members)) if self.weights is None else np.asarray(self.weights, float)
        if w.shape != (len(self.members),) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(
                f"JudgeEnsemble.weights={self.weights}: need {len(self.members)} non-negative "
                "weights with a positive sum"
            )
        object.__setattr__(self, "_w", w / w.sum())

    def member_probabilities(self, pairs: dict) -> np.ndarray:
        """[M, N]."""
        return np.stack([member(pairs) for member in self.members])

    def probability_and_disagreement(self, pairs: dict) -> tuple[np.ndarray, np.ndarray]:
        probs = self.member_probabilities(pairs)
        mean = self._w @ probs
        return mean, np.sqrt(np.maximum(self._w @ (probs - mean) ** 2, 0.0))

    def disagreement(self, pairs: dict) -> np.ndarray:
        return self.probability_and_disagreement(pairs)[1]

    def __call__(self, pairs: dict) -> np.ndarray:
        return self.probability_and_disagreement(pairs)[0]
