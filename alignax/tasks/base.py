"""What every task provides, and the train/eval split of its prompts.

A task is the world an experiment lives in: a tokenizer-like interface (`vocab_size`, `eos_id`,
`encode_text`, `decode`), sequence widths (`seq_len`), datasets for each stage, and a gold
reward that plays the role of human judgement.

Held-out evaluation is by construction: every prompt (a review prompt's word ids, an arithmetic
problem's operands and operator) belongs to exactly one split, decided by a stable hash of the
prompt itself, so no sampling seed can put an evaluation prompt into a training set.
"""

from __future__ import annotations

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


class Task(Protocol):
    """The interface experiments rely on (the review and arithmetic tasks implement it)."""

    name: str
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    seq_len: int

    # Names of prompt-batch entries (e.g. "answer_tokens") that `reward` takes as keywords.
    reward_inputs: tuple[str, ...]

    def decode(self, ids: Sequence[int]) -> str: ...

    def reward(self, tokens_BxL, response_mask_BxL, **inputs):
        """[B] jittable reward of full sequences, scored on the tokens under the mask."""
        ...

    def prompt_dataset(self, n: int, *, seed: int, split: str) -> dict[str, np.ndarray]:
        """Left-padded `prompt_tokens`/`prompt_mask` [n, P] from `split`, plus the inputs its
        reward needs (e.g. `answer_tokens`)."""
        ...


def device_prompts(task: Task, prompts: dict) -> dict[str, np.ndarray]:
    """The entries of a `prompt_dataset` that go to a device batch: the prompt and what the
    task's reward reads (`reward_inputs`); host-only entries (arithmetic's answer strings) stay
    behind."""
    return {k: prompts[k] for k in ("prompt_tokens", "prompt_mask", *task.reward_inputs)}
