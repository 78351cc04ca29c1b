"""Built-in verifiable task: arithmetic on a character vocabulary, in one step or several.

    task = ArithmeticTask(arithmetic_config())     # or alignax.tasks.get_task("arithmetic")
    problems = task.sample_problems(4, seed=0)      # [("12+7=", "19"), ...]
    reward_B = task.reward(tokens_BxL, loss_mask_BxL, answer_tokens=answer_tokens_BxA)  # 1 or 0

Vocabulary: pad=0, bos=1, eos=2, digits "0".."9" = 3..12, "+" = 13, "-" = 14, "*" = 15, "=" = 16.
A prompt is "a<op>b=" with operands drawn uniformly from [min_operand, max_operand]; with
`num_steps` = s > 1 it chains s operations, evaluated left to right ("3+4*2-5=": (3+4)*2-5).
The solution writes out the expression after each step, then the answer: "7*2-5=14-5=9" (one
step: just the answer, "19"). The verifier checks the outcome only: a response is correct iff it
holds as many "=" as the solution (one per written-out step, so the format is kept) and the
characters after its last "=" are exactly the answer's, followed by EOS (no extra tokens, no
missing EOS). Intermediate results are not checked by the verifier; `step_labels` checks each
written step against the one before it (the step annotation of a process reward model).
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
EQ_ID = CHAR_TO_ID["="]
VOCAB_SIZE = len(CHARS)
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def arithmetic_config() -> ml_collections.ConfigDict:
    """Difficulty of the arithmetic task. Every key is read by `ArithmeticTask`."""
    return ml_collections.ConfigDict(
        {
            "min_operand": 0,
            "max_operand": 20,
            "operators": "+-",
            # Operations per problem, evaluated left to right; the solution writes out the
            # expression after each one before the answer.
            "num_steps": 1,
            "answer_len": 0,  # solution characters; 0: derived from the operands and steps
            # Share of problems held out for evaluation (hash-assigned by commutation class:
            # "3+4=" and "4+3=" are always in the same split).
            "eval_problem_fraction": 0.2,
        }
    )


def final_answer(solution: str) -> str:
    """What follows the last "=" of a written-out solution ("7*2=14" -> "14")."""
    return solution.rsplit("=", 1)[-1]


def _check(text: str, solution: str) -> float:
    text, solution = text.strip(), solution.strip()
    same_steps = text.count("=") == solution.count("=")
    return 1.0 if same_steps and final_answer(text) == final_answer(solution) else 0.0


def _longest(lo: int, hi: int) -> int:
    """The most characters an integer in [lo, hi] is written with."""
    return max(len(str(lo)), len(str(hi)))


def _evaluate(operands: Sequence[int], ops: Sequence[str]) -> list[int]:
    """The value after each operation, left to right."""
    values, value = [], operands[0]
    for op, x in zip(ops, operands[1:], strict=True):
        value = _OPS[op](value, x)
        values.append(value)
    return values


def _solution(operands: Sequence[int], ops: Sequence[str]) -> str:
    """The expression after each step, then the answer: (3, 4, 2), "+*" -> "7*2=14"."""
    values = _evaluate(operands, ops)
    steps = [
        str(value) + "".join(f"{op}{x}" for op, x in zip(ops[j + 1 :], operands[j + 2 :]))
        for j, value in enumerate(values)
    ]
    return "=".join(steps)


def _next_step(expression: str) -> str | None:
    """The expression after one more left-to-right step ("3+4*2" -> "7*2", "-2*3" -> "-6"), or
    None when `expression` is a bare number or not an expression of this task."""
    match = re.fullmatch(r"(-?\d+)([-+*])(\d+)((?:[-+*]\d+)*)", expression)
    if match is None:
        return None
    first, op, second, rest = match.groups()
    return f"{_OPS[op](int(first), int(second))}{rest}"


class ArithmeticTask:
    name = "arithmetic"
    capabilities = frozenset(
        {"gold_reward", "demonstrations", "verified_references", "step_labels"}
    )
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
        if c.num_steps < 1:
            raise ValueError(f"task.num_steps={c.num_steps} must be >= 1")
        hi, lo, steps = c.max_operand, c.min_operand, c.num_steps
        # The range of the value after each step bounds the characters of its expression.
        derived, low, high = 0, lo, hi
        for j in range(1, steps + 1):
            extremes = [_OPS[op](v, x) for op in c.operators for v in (low, high) for x in (lo, hi)]
            low, high = min(extremes), max(extremes)
            derived += _longest(low, high) + (steps - j) * (1 + len(str(hi))) + (j < steps)
        self.answer_len = max(derived, c.answer_len)
        self.prompt_len = 1 + (steps + 1) * len(str(hi)) + steps + 1  # BOS a op b ... =
        self.seq_len = self.prompt_len + self.answer_len + 1  # + solution + EOS

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
        """n (prompt, solution) strings, e.g. ("12+7=", "19") or ("3+4*2=", "7*2=14"), from
        `split` ("train" or "eval"; None: any problem). Operands are uniform in [min_operand,
        max_operand], operators uniform in `operators`."""
        if split is not None:
            check_split(split)
        rng = np.random.default_rng(seed)
        c = self.config
        problems = []
        while len(problems) < n:
            operands = [
                int(v) for v in rng.integers(c.min_operand, c.max_operand + 1, size=c.num_steps + 1)
            ]
            ops = [str(rng.choice(list(c.operators))) for _ in range(c.num_steps)]
            if split is None or self.problem_split(operands, ops) == split:
                prompt = str(operands[0]) + "".join(f"{op}{x}" for op, x in zip(ops, operands[1:]))
                problems.append((prompt + "=", _solution(operands, ops)))
        return problems

    def problem_split(self, operands: Sequence[int], ops: Sequence[str]) -> str:
        """The split ("train" or "eval") of a problem, from its operands and operators alone.
        A problem and its commuted twin ("3+4" and "4+3" as the first step) share a split, so a
        held-out problem's twin is never trained on."""
        first = list(operands[:2])
        if ops[0] in "+*":
            first.sort()
        key = [*first, *(v for op, x in zip(ops[1:], operands[2:]) for v in ("+-*".index(op), x))]
        return split_of(["+-*".index(ops[0]), *key], self.config.eval_problem_fraction)

    @staticmethod
    def check(response: str, solution: str) -> float:
        """Host outcome checker on strings: 1.0 if the response has the solution's number of
        "=" and the same answer after its last one (surrounding spaces ignored)."""
        return _check(response, solution)

    def verified(self, response: Sequence[int], solution: str) -> bool:
        """`reward` on one response's ids: characters only, then EOS, and `check` passes."""
        *chars, last = list(response) or [PAD_ID]
        return (
            last == EOS_ID
            and all(i >= 3 for i in chars)
            and bool(_check(self.decode(chars), solution))
        )

    def step_labels(self, prompt: Sequence[int], response: Sequence[int]) -> list[bool]:
        """Per written step of a response (its text up to each "=", then the text after the last
        one), whether it is the expression before it with its first operation carried out:
        "3+4*2-5=" with "7*2-5=13-5=8<eos>" -> [True, False, True] (13 is wrong; 13-5=8 follows
        from it). The prompt's expression comes before the first step. The last step must also
        be a bare number followed by EOS: a response cut at the length cap or stopping before
        the answer ends on a wrong step. Only characters count (another id makes its step
        wrong). A response whose every step is right passes the verifier; one that passes may
        still hold wrong steps (the verifier reads only the answer and the number of steps)."""
        expression = self.decode(prompt)
        if not expression.endswith("="):
            raise ValueError(f"prompt {expression!r} does not end with '='")
        expression = expression[:-1]
        ids = list(response)
        ended = bool(ids) and ids[-1] == EOS_ID
        text = "".join(CHARS[i] if 3 <= i < VOCAB_SIZE else "?" for i in ids[: len(ids) - ended])
        labels = []
        for step in text.split("="):
            labels.append(step == _next_step(expression))
            expression = step
        labels[-1] = labels[-1] and ended and re.fullmatch(r"-?\d+", expression) is not None
        return labels

    @staticmethod
    def step_prefixes(response: Sequence[int]) -> list[list[int]]:
        """The response up to and including each of its "=": where each step but the last ends
        (`step_labels` has one label more)."""
        ids = list(response)
        return [ids[: j + 1] for j, i in enumerate(ids) if i == EQ_ID]

    reward_inputs: tuple[str, ...] = ("answer_tokens",)  # prompt-batch entries `reward` takes

    def reward(
        self, tokens_BxL: jax.Array, response_mask_BxL: jax.Array, answer_tokens: jax.Array
    ) -> jax.Array:
        """[B] float32: 1 where the masked response has the solution's number of "=" and ends
        in exactly the answer + EOS after its last "=", else 0 (jittable; `check` on ids).

        `answer_tokens` holds the solution's characters right-padded with pad (no EOS); the
        answer is what follows its last "=". The response is the (contiguous) run of tokens
        under `response_mask_BxL`.
        """
        tokens = jnp.asarray(tokens_BxL).astype(jnp.int32)
        mask = jnp.asarray(response_mask_BxL) > 0
        solution = jnp.asarray(answer_tokens).astype(jnp.int32)
        # The answer: the solution's characters after its last "=", then EOS, then pad.
        solution_eq = solution == EQ_ID
        start = jnp.max(jnp.where(solution_eq, jnp.arange(solution.shape[1]), -1), axis=1) + 1
        answer_len = jnp.sum(solution != PAD_ID, axis=1) - start
        width = solution.shape[1] + 1
        slot = jnp.arange(width)[None, :]
        chars = jnp.take_along_axis(
            solution, jnp.clip(start[:, None] + slot, 0, solution.shape[1] - 1), axis=1
        )
        target = jnp.where(slot < answer_len[:, None], chars, PAD_ID)
        target = jnp.where(slot == answer_len[:, None], EOS_ID, target)
        # The response's answer: its tokens after its last "=".
        response_eq = (tokens == EQ_ID) & mask
        later_eq = jnp.cumsum(response_eq[:, ::-1], axis=1)[:, ::-1] - response_eq
        final = mask & ~response_eq & (later_eq == 0)
        index = jnp.cumsum(final, axis=1) - 1  # position of each answer token
        expected = jnp.take_along_axis(target, jnp.clip(index, 0, width - 1), axis=1)
        token_ok = jnp.where(final, (tokens == expected) & (index < width), True)
        right_length = jnp.sum(final, axis=1) == answer_len + 1
        same_steps = jnp.sum(response_eq, axis=1) == jnp.sum(solution_eq, axis=1)
        return (jnp.all(token_ok, axis=1) & right_length & same_steps).astype(jnp.float32)

    def encode_answers(self, answers: Sequence[str]) -> np.ndarray:
        """[N, answer_len] int32 solution characters, right-padded with pad."""
        out = np.zeros((len(answers), self.answer_len), np.int32)
        for i, a in enumerate(answers):
            ids = self.encode_text(a)
            if len(ids) > self.answer_len:
                raise ValueError(f"solution {a!r} is longer than answer_len={self.answer_len}")
            out[i, : len(ids)] = ids
        return out

    def sft_dataset(self, n: int, *, seed: int, split: str = "train") -> dict[str, np.ndarray]:
        """SFT layout: BOS + "a+b=" + solution + EOS, right-padded; loss on solution + EOS."""
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
        """The solution of a prompt's token ids ("12+7=" -> "19", "3+4*2=" -> "7*2=14")."""
        text = self.decode(prompt)
        steps = self.config.num_steps
        if re.fullmatch(r"\d+" + r"[+*-]\d+" * steps + "=", text):
            operands = [int(x) for x in re.findall(r"\d+", text)]
            return _solution(operands, re.findall(r"[+*-]", text))
        raise ValueError(f"prompt {text!r} is not of the form a<op>b{'<op>c' * (steps - 1)}=")

    def encode_prompts(
        self, prompts: Sequence[Sequence[int]], width: int | None = None
    ) -> dict[str, np.ndarray]:
        """Prompts layout: BOS + prompt, LEFT-padded to `width` (default `prompt_len`; wider for
        prompts that carry the start of a solution, see `step_prefixes`)."""
        rows = [[BOS_ID, *prompt] for prompt in prompts]
        if width is None:
            return prompt_layout(rows, self.prompt_len, hint=" (prompt_len)")
        return prompt_layout(rows, width, hint=f" (width {width})")

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
        labelled by `annotator` of the verifier's reward (`check`, the response ending in EOS)."""
        gold = np.array(
            [self.verified(r, self.answer_of(p)) for p, r in zip(prompts, responses, strict=True)],
            np.float32,
        )
        return comparisons_layout(
            self.encode(prompts, responses), gold, num_responses, annotator, rng
        )

    def prompt_dataset(self, n: int, *, seed: int, split: str) -> dict[str, np.ndarray]:
        """Prompts (LEFT-padded BOS + "a+b=") from `split`, with `answer_tokens [N, A]` (the
        solutions' characters) for the verifier.

        The solution strings are also kept, host-side, as an object array under "answer" (so the
        dict slices like the other arrays); drop that key before sending a batch to a device.
        """
        problems = self.sample_problems(n, seed, split=split)
        answers = [a for _, a in problems]
        return {
            **self.encode_prompts([self.encode_text(prompt) for prompt, _ in problems]),
            "answer_tokens": self.encode_answers(answers),
            "answer": np.array(answers, dtype=object),
        }
