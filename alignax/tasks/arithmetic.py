"""Built-in verifiable task: short arithmetic on a character vocabulary.

    task = ArithmeticTask(arithmetic_config())     # or alignax.tasks.get_task("arithmetic")
    problems = task.sample_problems(4, seed=0)      # [("12+7=", "19"), ...]
    reward_B = task.reward(tokens_BxL, loss_mask_BxL, answer_tokens=answer_tokens_BxA)  # 1 or 0

Vocabulary: pad=0, bos=1, eos=2, digits "0".."9" = 3..12, "+" = 13, "-" = 14, "*" = 15, "=" = 16.
A prompt is "a<op>b=" with operands drawn uniformly from [min_operand, max_operand]; the answer is
the exact integer result (a leading "-" when negative). A response is correct iff its tokens
are exactly the answer's characters followed by EOS (no extra tokens, no missing EOS).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from alignax.data.layouts import lm_layout, prompt_layout
from alignax.tasks.base import (
    Annotator,
    check_eval_fraction,
    check_split,
    comparisons_layout,
    split_of,
)

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
CHARS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", *"0123456789", "+", "-", "*", "=")
CHAR_TO_ID = {c: i for i, c in enumerate(CHARS)}
VOCAB_SIZE = len(CHARS)
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def arithmetic_config() -> ml_collections.ConfigDict:
    """Difficulty of the arithmetic task. Every key is read by `ArithmeticTask`."""
    return ml_collections.ConfigDict(
        {
            "min_operand": 0,
            "max_operand": 20,
            "operators": "+-",
            "answer_len": 0,  # 0: derived from the operand range
            # Share of (a, op, b) problems held out for evaluation (hash-assigned).
            "eval_problem_fraction": 0.2,
        }
    )


def _check(text: str, answer: str) -> float:
    return 1.0 if text.strip() == answer.strip() else 0.0


class ArithmeticTask:
    name = "arithmetic"
    capabilities = frozenset({"gold_reward", "demonstrations", "verified_references"})
    pad_id, bos_id, eos_id = PAD_ID, BOS_ID, EOS_ID
    vocab_size = VOCAB_SIZE

    def __init__(self, config: ml_collections.ConfigDict | None = None):
        self.config = arithmetic_config() if config is None else config
        c = self.config
        if c.min_operand < 0 or c.max_operand < c.min_operand:
            raise ValueError(
                f"need 0 <= min_operand <= max_operand, got {c.min_operand}, {c.max_operand}"
            )
        if not c.operators or any(op not in _OPS for op in c.operators):
            raise ValueError(f"operators={c.operators!r}; allowed characters: '+', '-', '*'")
        check_eval_fraction(c.eval_problem_fraction, "task.eval_problem_fraction")
        hi, lo = c.max_operand, c.min_operand
        extremes = [_OPS[op](a, b) for op in c.operators for a in (lo, hi) for b in (lo, hi)]
        derived = max(len(str(x)) for x in extremes)
        self.answer_len = max(derived, c.answer_len)
        self.prompt_len = 1 + 2 * len(str(hi)) + 2  # BOS a op b =
        self.seq_len = self.prompt_len + self.answer_len + 1  # + answer + EOS

    def encode_text(self, text: str) -> list[int]:
        try:
            return [CHAR_TO_ID[ch] for ch in text]
        except KeyError as e:
            raise ValueError(
                f"character {e.args[0]!r} is not in the arithmetic vocabulary"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(CHARS[i] if 3 <= i < VOCAB_SIZE else "" for i in ids)

    def sample_problems(self, n: int, seed, *, split: str | None = None) -> list[tuple[str, str]]:
        """n (prompt, answer) strings, e.g. ("12+7=", "19"), from `split` ("train" or "eval";
        None: any problem). Operands are uniform in [min_operand, max_operand]."""
        if split is not None:
            check_split(split)
        rng = np.random.default_rng(seed)
        c = self.config
        problems = []
        while len(problems) < n:
            x, y = (int(v) for v in rng.integers(c.min_operand, c.max_operand + 1, size=2))
            op = str(rng.choice(list(c.operators)))
            if split is None or self.problem_split(x, op, y) == split:
                problems.append((f"{x}{op}{y}=", str(_OPS[op](x, y))))
        return problems

    def problem_split(self, a: int, op: str, b: int) -> str:
        """The split ("train" or "eval") of the problem a<op>b, from its operands alone."""
        return split_of((a, "+-*".index(op), b), self.config.eval_problem_fraction)

    @staticmethod
    def check(response: str, answer: str) -> float:
        """Host exact-match checker on strings: 1.0 if equal (surrounding spaces ignored)."""
        return _check(response, answer)

    reward_inputs: tuple[str, ...] = ("answer_tokens",)  # prompt-batch entries `reward` takes

    def reward(
        self, tokens_BxL: jax.Array, response_mask_BxL: jax.Array, answer_tokens: jax.Array
    ) -> jax.Array:
        """[B] float32: 1 where the masked response is exactly answer + EOS, else 0 (jittable).

        `answer_tokens` holds the answer's characters right-padded with pad (no EOS).
        The response is the (contiguous) run of tokens under `response_mask_BxL`.
        """
        tokens = jnp.asarray(tokens_BxL).astype(jnp.int32)
        mask = jnp.asarray(response_mask_BxL) > 0
        answer = jnp.asarray(answer_tokens).astype(jnp.int32)
        answer_len = jnp.sum(answer != PAD_ID, axis=1)
        # Target: answer characters, EOS right after them, pad beyond.
        width = answer.shape[1] + 1
        slot = jnp.arange(width)[None, :]
        answer_pad = jnp.pad(answer, ((0, 0), (0, 1)))
        target = jnp.where(slot == answer_len[:, None], EOS_ID, answer_pad)
        index = jnp.cumsum(mask, axis=1) - 1  # response position of each response token
        expected = jnp.take_along_axis(target, jnp.clip(index, 0, width - 1), axis=1)
        token_ok = jnp.where(mask, (tokens == expected) & (index < width), True)
        right_length = jnp.sum(mask, axis=1) == answer_len + 1
        return (jnp.all(token_ok, axis=1) & right_length).astype(jnp.float32)

    def encode_answers(self, answers: Sequence[str]) -> np.ndarray:
        """[N, answer_len] int32 answer characters, right-padded with pad."""
        out = np.zeros((len(answers), self.answer_len), np.int32)
        for i, a in enumerate(answers):
            ids = self.encode_text(a)
            if len(ids) > self.answer_len:
                raise ValueError(f"answer {a!r} is longer than answer_len={self.answer_len}")
            out[i, : len(ids)] = ids
        return out

    def sft_dataset(self, n: int, *, seed: int, split: str = "train") -> dict[str, np.ndarray]:
        """SFT layout: BOS + "a+b=" + answer + EOS, right-padded; loss on answer + EOS."""
        problems = self.sample_problems(n, seed, split=split)
        return self.encode(
            [self.encode_text(prompt) for prompt, _ in problems],
            [[*self.encode_text(answer), EOS_ID] for _, answer in problems],
        )

    # ------------------------------------------------------------------ comparisons
    # Pairs of a policy's answers labelled by an annotator of the verifier (alignax/labels.py):
    # a learned judge of correctness, e.g. for the judge drift alarm (experiments/judge_drift.py).

    def sample_prompts(self, n: int, seed, *, split: str | None = None) -> list[list[int]]:
        """n prompts ("a<op>b=" as token ids, no BOS) from `split` (`sample_problems`)."""
        return [
            self.encode_text(prompt) for prompt, _ in self.sample_problems(n, seed, split=split)
        ]

    def answer_of(self, prompt: Sequence[int]) -> str:
        """The exact answer of a prompt's token ids ("12+7=" -> "19")."""
        text = self.decode(prompt)
        match = re.fullmatch(r"(\d+)([+*-])(\d+)=", text)
        if match:
            a, op, b = match.groups()
            return str(_OPS[op](int(a), int(b)))
        raise ValueError(f"prompt {text!r} is not of the form a<op>b=")

    def encode_prompts(self, prompts: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """Prompts layout: BOS + prompt, LEFT-padded to `prompt_len`."""
        rows = [[BOS_ID, *prompt] for prompt in prompts]
        return prompt_layout(rows, self.prompt_len, hint=" (prompt_len)")

    def encode(
        self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]
    ) -> dict[str, np.ndarray]:
        """SFT layout of (prompt, response) token ids: BOS + prompt + response, right-padded to
        `seq_len`; loss on the response (which carries its own EOS, if any)."""
        rows = [([BOS_ID, *p], r) for p, r in zip(prompts, responses, strict=True)]
        hint = (
            f" (seq_len): responses of the arithmetic task are at most answer_len + 1 = "
            f"{self.answer_len + 1} tokens"
        )
        return lm_layout(rows, self.seq_len, hint=hint)

    def reference_responses(self, answer_tokens: np.ndarray, width: int) -> np.ndarray:
        """[N, width] the verified responses (each answer's characters + EOS, right-padded with
        pad) of a prompt batch's `answer_tokens`: what a judge is checked against."""
        answer = np.asarray(answer_tokens)
        if width < answer.shape[1] + 1:
            raise ValueError(
                f"width={width}: the arithmetic task's answers take up to answer_len + 1 = "
                f"{answer.shape[1] + 1} tokens with their EOS"
            )
        lengths = np.sum(answer != PAD_ID, axis=1)
        out = np.zeros((len(answer), width), np.int32)
        out[:, : answer.shape[1]] = answer
        out[np.arange(len(answer)), lengths] = EOS_ID
        return out

    def label_comparisons(
        self,
        prompts: Sequence[Sequence[int]],
        responses: Sequence[Sequence[int]],
        num_responses: int,
        annotator: Annotator,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Comparisons layout from N*K (prompt, response) rows, K consecutive rows per prompt,
        labelled by `annotator` of the verifier's reward (1 for exactly answer + EOS, else 0)."""
        answer_ids = [[*self.encode_text(self.answer_of(p)), EOS_ID] for p in prompts]
        gold = np.array([list(r) == a for r, a in zip(responses, answer_ids)], np.float32)
        return comparisons_layout(
            self.encode(prompts, responses), gold, num_responses, annotator, rng
        )

    def prompt_dataset(self, n: int, *, seed: int, split: str) -> dict[str, np.ndarray]:
        """Prompts (LEFT-padded BOS + "a+b=") from `split`, with `answer_tokens [N, A]` for the
        verifier.

        The answer strings are also kept, host-side, as an object array under "answer" (so the
        dict slices like the other arrays); drop that key before sending a batch to a device.
        """
        problems = self.sample_problems(n, seed, split=split)
        answers = [a for _, a in problems]
        return {
            **self.encode_prompts([self.encode_text(prompt) for prompt, _ in problems]),
            "answer_tokens": self.encode_answers(answers),
            "answer": np.array(answers, dtype=object),
        }
