"""Written principles for the review task, constitutions, and multi-objective rewards.

A principle is a named, described score of one response, defined on one component of the gold
reward (`ReviewTask.gold_reward_terms`):

    sentiment       3 tanh(S / 3)            S: compositional sentiment ("not", "very")
    non_repetition  -repeated bigram share
    fluency         mean token log-lik under the generator - its mean on generator samples
    termination     -[no EOS]

so the gold reward's raw score is exactly the constitution `gold_constitution(task)` (the
principles weighted by the task's `sentiment_weight`, `repetition_weight`, `fluency_weight`,
`no_eos_penalty`), and gold = (raw - base mean) / base std. A `Constitution` is a weighted list
of principles; `constitution.reward` is the direction-weighted scalar reward of Directional
Preference Alignment (Wang et al. 2024): the weighted sum of the `vector_reward` components.
`ConstitutionJudge` labels pairs by a Bradley-Terry model of that reward; a misspecified
constitution (a principle missing, or weights off) is an AI judge that disagrees with gold in
known ways.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from alignax.feedback.judges import sigmoid


@dataclasses.dataclass(frozen=True)
class Principle:
    """`score(terms, task)` maps the [B] arrays of `gold_reward_terms` to a [B] score (higher
    is better; jnp or numpy). `words`: review words that cue the principle for a `SelfJudge`.
    `gold_weight`: the task config key of this component's weight in the gold reward."""

    name: str
    description: str
    score: Callable
    words: tuple[str, ...]
    gold_weight: str


PRINCIPLES: dict[str, Principle] = {
    p.name: p
    for p in (
        Principle(
            "sentiment",
            "Choose the response that speaks more positively about its topic, reading negations "
            "('not') and intensifiers ('very') correctly.",
            lambda terms, task: 3.0 * jnp.tanh(terms["sentiment"] / 3.0),
            ("excellent",),
            "sentiment_weight",
        ),
        Principle(
            "non_repetition",
            "Choose the response that repeats itself less (fewer repeated word pairs).",
            lambda terms, task: -terms["repetition"],
            ("also",),
            "repetition_weight",
        ),
        Principle(
            "fluency",
            "Choose the response that reads more naturally: more likely words in their context.",
            lambda terms, task: terms["fluency"] - task.base_fluency,
            ("overall",),
            "fluency_weight",
        ),
        Principle(
            "termination",
            "Choose the response that finishes (ends with an end-of-text).",
            lambda terms, task: -terms["no_eos"],
            (".",),
            "no_eos_penalty",
        ),
    )
}


def principle(name: str) -> Principle:
    if name not in PRINCIPLES:
        raise ValueError(f"unknown principle {name!r}; allowed: {', '.join(PRINCIPLES)}")
    return PRINCIPLES[name]


def principle_tokens(task, p: Principle) -> tuple[int, ...]:
    """The principle's cue words as the task's token ids (for `SelfJudge`)."""
    return tuple(task.encode_text(" ".join(p.words)))


def vector_reward(task, tokens_BxL, response_mask_BxL, principles: Sequence[Principle]):
    """[B, P] float32: one reward per principle (jnp; jittable). Masks as `gold_reward_terms`."""
    terms = task.gold_reward_terms(tokens_BxL, response_mask_BxL)
    return jnp.stack([jnp.asarray(p.score(terms, task), jnp.float32) for p in principles], -1)


def vector_reward_np(task, tokens_BxL, response_mask_BxL, principles: Sequence[Principle]):
    """Host version of `vector_reward` (chunked, compiled once per shape): [B, P] float64."""
    terms = task.gold_reward_terms_np(tokens_BxL, response_mask_BxL)
    terms = {k: np.asarray(v, np.float64) for k, v in terms.items()}
    if not principles:
        return np.zeros((len(terms["gold"]), 0))
    return np.stack([np.asarray(p.score(terms, task), np.float64) for p in principles], -1)


def directional_reward(vector_BxP, direction_P):
    """DPA's scalar reward: the direction-weighted sum sum_p w_p r_p of the components, [B].

    Wang et al. (2024), "Arithmetic Control of LLMs for Diverse User Preferences: Directional
    Preference Alignment with Multi-Objective Rewards": a user's preference is a direction w
    (often a unit vector) in reward space and the policy is trained on <w, r(x, y)>.
    """
    direction_P = np.asarray(direction_P, np.float64)
    if np.ndim(vector_BxP) != 2 or vector_BxP.shape[-1] != direction_P.shape[0]:
        raise ValueError(
            f"directional_reward: vector reward of shape {np.shape(vector_BxP)} needs a "
            f"direction of {np.shape(vector_BxP)[-1]} weights, got {direction_P.shape}"
        )
    return vector_BxP @ direction_P.astype(vector_BxP.dtype)


def unit_direction(angle: float) -> np.ndarray:
    """DPA's two-objective direction (cos angle, sin angle); angle in radians."""
    return np.array([np.cos(angle), np.sin(angle)])


@dataclasses.dataclass(frozen=True)
class Constitution:
    """A weighted list of principles; its reward is the weighted sum of their scores."""

    principles: tuple[Principle, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        if len(self.principles) != len(self.weights) or not self.principles:
            raise ValueError(
                f"Constitution: {len(self.principles)} principles and {len(self.weights)} "
                "weights; need the same positive number of each"
            )

    @classmethod
    def of(cls, names: Sequence[str], weights: Sequence[float]) -> Constitution:
        return cls(tuple(principle(n) for n in names), tuple(float(w) for w in weights))

    def describe(self) -> str:
        """The constitution as text: one weighted principle per line."""
        return "\n".join(
            f"{w:g} x {p.name}: {p.description}" for p, w in zip(self.principles, self.weights)
        )

    def reward(self, task, tokens_BxL, response_mask_BxL):
        """[B] jnp: `directional_reward(vector_reward(...), weights)`."""
        vector = vector_reward(task, tokens_BxL, response_mask_BxL, self.principles)
        return directional_reward(vector, self.weights)

    def reward_np(self, task, tokens_BxL, response_mask_BxL) -> np.ndarray:
        vector = vector_reward_np(task, tokens_BxL, response_mask_BxL, self.principles)
        return directional_reward(vector, self.weights)


def gold_constitution(task) -> Constitution:
    """Every principle at its weight in the task's gold reward: its reward is the gold raw score."""
    names = tuple(PRINCIPLES)
    return Constitution.of(names, [task.config[principle(n).gold_weight] for n in names])


@dataclasses.dataclass(frozen=True, eq=False)
class ConstitutionJudge:
    """P(a > b) = sigmoid((R(a) - R(b)) / temperature) with R the constitution's reward.

    With `gold_constitution(task)` and temperature = annotator temperature x the task's
    `base_raw_std`, it is exactly the Bradley-Terry gold annotator's probability."""

    task: object
    constitution: Constitution
    temperature: float = 1.0

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"ConstitutionJudge.temperature={self.temperature} must be > 0")

    def rewards(self, pairs: dict) -> np.ndarray:
        """[N, 2] constitution rewards of a and b."""
        n, k, length = pairs["tokens"].shape
        flat = lambda key: np.asarray(pairs[key]).reshape(n * k, length)
        return self.constitution.reward_np(self.task, flat("tokens"), flat("loss_mask")).reshape(
            n, k
        )

    def __call__(self, pairs: dict) -> np.ndarray:
        r = self.rewards(pairs)
        return sigmoid((r[:, 0] - r[:, 1]) / self.temperature)


def principle_judge(task, name: str, temperature: float = 1.0) -> ConstitutionJudge:
    """The judge of one principle (a constitution of one, weight 1)."""
    return ConstitutionJudge(task, Constitution.of([name], [1.0]), temperature)
