"""What every task provides, and the train/eval split of its prompts.

A task is the world an experiment lives in: a tokenizer-like interface (`vocab_size`, `eos_id`,
`encode_text`, `decode`), sequence widths (`seq_len`), datasets for each stage, and a gold
reward that plays the role of human judgement.

Held-out evaluation is by construction: every prompt (a review prompt's word ids, an arithmetic
problem's operands and operator) belongs to exactly one split, decided by a stable hash of the
prompt itself, so no sampling seed can put an evaluation prompt into a training set.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

SPLITS = ("train", "eval")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; allowed: {', '.join(SPLITS)}")


def split_of(key: Sequence[int], eval_fraction: float) -> str:
    """'eval' for a stable fraction `eval_fraction` of all keys, else 'train'."""
    digest = hashlib.blake2b(np.asarray(key, np.int64).tobytes(), digest_size=8).digest()
    uniform = int.from_bytes(digest, "little") / 2.0**64
    return "eval" if uniform < eval_fraction else "train"


def check_eval_fraction(eval_fraction: float, key: str) -> None:
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"{key}={eval_fraction} must be in (0, 1)")


# What a task can provide beyond the interface every task has, by name: a task lists its own in
# `capabilities`, and a stage that needs one asks for it with `require` (never with hasattr or
# the task's name), which names what is missing.
CAPABILITIES = {
    "gold_reward": "a reward of responses that plays the role of human judgement (reward): "
    "every built-in task's; a data file's with a verifier (data.verifier)",
    "demonstrations": "demonstrations for SFT (sft_dataset)",
    "best_of_n_demonstrations": "demonstrations chosen by the gold reward among candidates "
    "(sft_dataset(num_candidates=...))",
    "pretraining_text": "text to pretrain on (pretraining_dataset)",
    "generator_comparisons": "comparisons of its own generator's responses (comparison_dataset)",
    "verified_references": "the verified answer to each prompt (reference_responses)",
    "step_labels": "a check of every written step of a response against the step before it, "
    "the step annotation of a process reward model (step_labels), where each step ends "
    "(step_prefixes), and prompts laid out wide enough to carry a prefix "
    "(encode_prompts(prompts, width))",
    "learned_gold": "a gold reward that is a learned classifier, described with its held-out "
    "accuracy (describe_gold)",
}


def require(task: Task, *needed: str, by: str, hint: str = "") -> None:
    """Raises ValueError when `task` lacks a capability in `needed`, naming it, what needs it
    (`by`, e.g. a config key and value) and, when given, what to do instead (`hint`)."""
    unknown = [c for c in needed if c not in CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown task capabilities {unknown}; known: {sorted(CAPABILITIES)}")
    missing = [c for c in needed if c not in task.capabilities]
    if missing:
        what = "; ".join(f"{c}: {CAPABILITIES[c]}" for c in missing)
        raise ValueError(
            f"{by} needs what the {task.name} task does not provide ({what}); it provides "
            f"{sorted(task.capabilities) or 'none of them'}" + (f". {hint}" if hint else "")
        )


class Task(Protocol):
    """The interface experiments rely on (the review, arithmetic and imdb tasks implement it);
    `capabilities` names what else the task provides (CAPABILITIES)."""

    name: str
    capabilities: frozenset[str]
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    seq_len: int

    # Names of prompt-batch entries (e.g. "answer_tokens") that `reward` takes as keywords.
    reward_inputs: tuple[str, ...]

    def decode(self, ids: Sequence[int]) -> str: ...

    def reward(self, tokens_BxL, response_mask_BxL, **inputs):
        """[B] jittable reward of full sequences, scored on the tokens under the mask (tasks
        with the 'gold_reward' capability)."""
        ...

    def prompt_dataset(self, n: int, *, seed: int, split: str) -> dict[str, np.ndarray]:
        """Left-padded `prompt_tokens`/`prompt_mask` [n, P] from `split`, plus the inputs its
        reward needs (e.g. `answer_tokens`)."""
        ...


@dataclasses.dataclass(frozen=True)
class Annotator:
    """A simulated labeller of the gold reward.

    kind: "hard" (prefer the higher gold; ties go to the first), "bradley_terry"
    (P(a > b) = sigmoid((r_a - r_b) / temperature)). Then each label is flipped with probability
    `flip_rate`. For K-way rankings "hard" sorts by gold and "bradley_terry" samples a
    Plackett-Luce ranking with scores r / temperature (its pairwise marginals are Bradley-Terry).
    `length_bias`: a known length bias (Singhal et al. 2023), gold units the annotator adds to a
    response's reward per response token; the layouts it labels judge by `utility`.
    """

    kind: str = "hard"
    temperature: float = 1.0
    flip_rate: float = 0.0
    length_bias: float = 0.0

    def __post_init__(self):
        if self.kind not in ("hard", "bradley_terry"):
            raise ValueError(f"Annotator.kind={self.kind!r}; allowed: 'hard', 'bradley_terry'")
        if not 0.0 <= self.flip_rate <= 1.0:
            raise ValueError(f"Annotator.flip_rate={self.flip_rate} must be in [0, 1]")
        if self.kind == "bradley_terry" and self.temperature <= 0:
            raise ValueError(f"Annotator.temperature={self.temperature} must be > 0")

    def utility(self, gold, lengths) -> np.ndarray:
        """What the annotator judges by: the gold reward plus `length_bias` per response token
        (`lengths`, each response's tokens: `response_lengths` of a layout)."""
        return np.asarray(gold, np.float64) + self.length_bias * np.asarray(lengths, np.float64)

    def prefer_first(self, reward_a_N, reward_b_N, rng: np.random.Generator) -> np.ndarray:
        """[N] bool: True where the annotator prefers a over b."""
        a, b = np.asarray(reward_a_N, np.float64), np.asarray(reward_b_N, np.float64)
        if self.kind == "hard":
            prefer = a >= b
        else:
            prefer = rng.random(a.shape) < self._clean_probability(a, b)
        flip = rng.random(a.shape) < self.flip_rate
        return prefer ^ flip

    def _clean_probability(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.kind == "hard":
            return (a >= b).astype(np.float64)
        return 1.0 / (1.0 + np.exp(-(a - b) / self.temperature))

    def preference_probability(self, reward_a_N, reward_b_N) -> np.ndarray:
        """[N] P(the annotator prefers a over b), flips included: the target a calibrated
        reward model's sigmoid(r_a - r_b) should match."""
        a, b = np.asarray(reward_a_N, np.float64), np.asarray(reward_b_N, np.float64)
        p = self._clean_probability(a, b)
        return (1.0 - self.flip_rate) * p + self.flip_rate * (1.0 - p)

    def rank(self, rewards_NxK, rng: np.random.Generator) -> np.ndarray:
        """[N, K] int ranks, 0 = best (hard sort, or Plackett-Luce sample via Gumbel noise)."""
        r = np.asarray(rewards_NxK, np.float64)
        if self.kind == "bradley_terry":
            r = r / self.temperature + rng.gumbel(size=r.shape)
        order = np.argsort(-r, axis=-1, kind="stable")  # order[i, j] = index of j-th best
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(r.shape[-1])[None, :], axis=-1)
        return ranks


def comparisons_layout(
    batch: dict[str, np.ndarray],
    gold_N: np.ndarray,
    num_responses: int,
    annotator: Annotator,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The comparisons layout from N*K encoded rows (K consecutive rows per prompt) and their
    gold rewards: `tokens`, `input_mask`, `loss_mask` [N, K, L] ordered best first by
    `annotator`'s labels (for pairs, chosen at index 0; the annotator judges `utility`: gold and,
    with a length bias, each row's `loss_mask` tokens), `ranks` [N, K] (0 = best) and
    `gold_reward` [N, K] (for evaluation; not a model input)."""
    K = num_responses
    n = len(gold_N) // K
    gold = np.asarray(gold_N).reshape(n, K)
    judged = annotator.utility(gold, response_lengths(batch).reshape(n, K))
    if K == 2:
        first = annotator.prefer_first(judged[:, 0], judged[:, 1], rng)
        ranks = np.stack([~first, first], axis=1).astype(np.int64)
    else:
        ranks = annotator.rank(judged, rng)
    order = np.argsort(ranks, axis=1, kind="stable")  # best first
    rows = (np.arange(n)[:, None] * K + order).reshape(-1)
    out = {k: v[rows].reshape(n, K, -1) for k, v in batch.items()}
    out["ranks"] = np.tile(np.arange(K, dtype=np.int32), (n, 1))
    out["gold_reward"] = gold[np.arange(n)[:, None], order].astype(np.float32)
    return out


def response_lengths(layout: dict) -> np.ndarray:
    """The tokens of each response of a layout (its `loss_mask` summed over the last axis):
    [N, K] for a comparisons layout, [N] for encoded rows."""
    return layout["loss_mask"].sum(axis=-1)


def device_prompts(task: Task, prompts: dict) -> dict[str, np.ndarray]:
    """The entries of a `prompt_dataset` that go to a device batch: the prompt and what the
    task's reward reads (`reward_inputs`); host-only entries (arithmetic's answer strings) stay
    behind."""
    return {k: prompts[k] for k in ("prompt_tokens", "prompt_mask", *task.reward_inputs)}
