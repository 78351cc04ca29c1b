"""A user's own data file as a task: its prompts for the policy to answer (PPO, GRPO, the
evaluation of every stage), its demonstrations for SFT, and a verifier declared in the config as
its reward (RLVR).

    config.data.path = "math.jsonl"           # {prompt, answer} records (any format's prompts)
    config.data.tokenizer = "/models/smollm2"  # the checkpoint's tokenizer (HF dir, GGUF, spm)
    config.data.verifier = "regex"             # '', 'exact', 'regex' or 'package.module:function'
    config.data.answer_field = "answer"        # the record field a response is compared with
    config.data.answer_pattern = r"#### (-?\\d+)"
    task = alignax.tasks.stage_task(config)   # this FileTask, since data.path is set

Records are read and validated by `alignax.data.formats` (file:line errors); chat turns are
written with the tokenizer's chat template when it has one (prompts end with the generation
prompt). Training prompts are the file's minus a held-out `data.eval_fraction` of its prompts
(or all of them, with `data.eval_path`, or a prepared TFDS dataset's test split, for
evaluation): `alignax.data.sources.file_examples`, the one split of every file loader.

Verifiers score a response's text (special tokens dropped, surrounding white space stripped)
against the record's `answer_field`: 'exact' is 1 when they are equal; 'regex' takes the first
match of `answer_pattern` in the response (its first group, if it has one) and is 1 when that
equals the answer, 0 without a match; 'package.module:function' calls
`function(response: str, record: dict) -> float` with the whole record. Scoring runs on the host
(`jax.pure_callback`), so it works inside the jitted rollouts of every algorithm.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from alignax.data.formats import Example, encode_examples
from alignax.data.layouts import lm_layout
from alignax.data.sources import (
    data_tokenizer,
    encode_file_examples,
    encode_records,
    file_examples,
)
from alignax.tasks.base import comparisons_layout

VERIFIERS = ("", "exact", "regex")  # or 'package.module:function'


def verifier_from_config(data_config) -> Callable[[str, dict], float] | None:
    """The config's verifier as `score(response, record) -> float` (None without one)."""
    kind, field = data_config.verifier, data_config.answer_field
    # Keys that only some verifiers read: set for another, they would be ignored.
    for key, default, readers in (
        ("answer_pattern", "", ("regex",)),
        ("answer_field", "answer", ("exact", "regex")),
    ):
        if data_config[key] != default and kind not in readers:
            raise ValueError(
                f"data.{key}={data_config[key]!r} is read by data.verifier="
                f"{' or '.join(map(repr, readers))} only, not data.verifier={kind!r}"
            )
    if kind == "":
        return None

    def answer(record: dict) -> str:
        return str(record[field]).strip()

    if kind == "exact":
        return lambda response, record: float(response.strip() == answer(record))
    if kind == "regex":
        try:
            pattern = re.compile(data_config.answer_pattern)
        except re.error as e:
            raise ValueError(f"data.answer_pattern={data_config.answer_pattern!r}: {e}") from None
        if not data_config.answer_pattern:
            raise ValueError("data.verifier='regex' needs data.answer_pattern")

        def regex(response: str, record: dict) -> float:
            match = pattern.search(response)
            if match is None:
                return 0.0
            found = match.group(1) if pattern.groups else match.group(0)
            return float(found.strip() == answer(record))

        return regex
    module, _, name = kind.partition(":")
    if not module or not name:
        raise ValueError(
            f"data.verifier={kind!r}: one of {VERIFIERS[1:]} or 'package.module:function'"
        )
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"data.verifier={kind!r} cannot be imported: {e}") from None
    return lambda response, record: float(function(response, record))


class FileTask:
    """The task of `config.data` (see the module docstring); built by `alignax.tasks.stage_task`.

    `capabilities`: 'demonstrations' when the file holds {prompt, completion} or {messages}
    records, 'gold_reward' when the config declares a verifier."""

    name = "file"
    reward_inputs: tuple[str, ...] = ("record",)  # the index of the prompt's record

    def __init__(self, data_config, *, max_len: int):
        self.tokenizer = data_tokenizer(data_config)
        self.vocab_size = self.tokenizer.vocab_size
        self.pad_id = 0
        self.bos_id, self.eos_id = self.tokenizer.bos_id, self.tokenizer.eos_id
        self.seq_len = max_len
        self._data, self._max_len = data_config, max_len
        train, evaluation = file_examples(data_config)
        self.records = [*train, *evaluation]  # a prompt batch's `record` indexes this list
        self._splits = {
            "train": np.arange(len(train)),
            "eval": np.arange(len(train), len(self.records)),
        }
        self._score = verifier_from_config(data_config)
        if self._score is not None and data_config.verifier in ("exact", "regex"):
            field = data_config.answer_field
            for example in self.records:
                if field not in example.record:
                    raise ValueError(
                        f"{example.where}: data.verifier={data_config.verifier!r} compares with "
                        f"field {field!r} (data.answer_field), which the record lacks"
                    )
        has = {
            "demonstrations": self.holds("demonstration"),
            "gold_reward": self._score is not None,
        }
        self.capabilities = frozenset(name for name, present in has.items() if present)

    # -------------------------------------------------------------- the tokenizer's interface
    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`; ids past the tokenizer's vocabulary (a model's embedding is often
        padded beyond it, and a policy may sample there) are left out."""
        return self.tokenizer.decode([int(i) for i in ids if 0 <= int(i) < self.vocab_size])

    # -------------------------------------------------------------- datasets
    def _rows(self, split: str, kinds: Sequence[str] | None = None) -> np.ndarray:
        """The indices of `split`'s records (of `kinds`, if given); raises when there are none."""
        if split not in self._splits:
            raise ValueError(f"split={split!r}; allowed: {sorted(self._splits)}")
        rows = self._splits[split]
        if kinds is not None:
            rows = rows[[self.records[i].kind in kinds for i in rows]]
        if not len(rows):
            raise ValueError(
                f"{self._data.path}: no {'/'.join(kinds or ['record'])} records in the {split} "
                "split (data.eval_path, data.eval_fraction)"
            )
        return rows

    def _draw(self, n: int, seed: int, split: str, kinds: Sequence[str] | None) -> np.ndarray:
        """Up to `n` of `_rows(split, kinds)`, in an order drawn with `seed`."""
        rows = self._rows(split, kinds)
        return rows[np.random.default_rng(seed).permutation(len(rows))[:n]]

    def holds(self, kind: str) -> bool:
        """Whether the file holds records of `kind` (alignax.data.formats.Example.kind)."""
        return any(e.kind == kind for e in self.records)

    def encoded(self, kind: str, split: str) -> dict[str, np.ndarray]:
        """Every `kind` record of `split` in the batch layout a workflow trains on
        (`alignax.data.sources.encode_records`: comparisons best-first), with the task's
        tokenizer: the file is read once, by this task."""
        return encode_records(
            [self.records[i] for i in self._rows(split)],
            self.tokenizer,
            self._data,
            kind=kind,
            max_len=self._max_len,
            what="training" if split == "train" else "evaluation",
        )

    def prompt_dataset(self, n: int, *, seed: int, split: str) -> dict[str, np.ndarray]:
        """Up to `n` prompts of `split` (every record's prompt), left-padded to the longest
        (at most half of max_len; longer prompts keep their end), and `record` [n]."""
        rows = self._draw(n, seed, split, kinds=None)
        return {**self.encode_prompts(rows), "record": rows.astype(np.int32)}

    def encode_prompts(self, records: Sequence[int]) -> dict[str, np.ndarray]:
        """The prompts of `records` (indices into `self.records`): BOS + the prompt (as the chat
        template writes it, with the generation prompt), left-padded to the longest."""
        prompts = [
            Example("prompt", r.prompt, where=r.where, messages=r.messages)
            for r in (self.records[int(i)] for i in records)
        ]
        batch, _ = encode_examples(prompts, self.tokenizer, max_len=self._max_len)
        width = int(batch["prompt_mask"].sum(1).max())
        return {k: batch[k][:, -width:] for k in ("prompt_tokens", "prompt_mask")}

    # -------------------------------------------------------------- labelling (alignax.labels)
    def sample_prompts(self, n: int, seed, *, split: str) -> list[int]:
        """`n` prompts of `split` for `alignax.labels`, as record indices (`encode_prompts`
        and `label_comparisons` read them): drawn with replacement when the split holds fewer."""
        rows = self._rows(split)
        rng = np.random.default_rng(seed)
        return [int(i) for i in rng.choice(rows, size=n, replace=n > len(rows))]

    def label_comparisons(
        self,
        prompts: Sequence[int],
        responses: Sequence[Sequence[int]],
        num_responses: int,
        annotator,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Comparisons layout from N*K (record index, response ids) rows, K consecutive rows
        per prompt, labelled by `annotator` of the verifier's score of each response."""
        if self._score is None:
            raise ValueError(
                f"labelling samples of {self._data.path}'s prompts needs a verifier (data.verifier)"
            )
        encoded = self.encode_prompts(prompts)
        rows = [
            (tokens[mask > 0], response)
            for tokens, mask, response in zip(
                encoded["prompt_tokens"], encoded["prompt_mask"], responses, strict=True
            )
        ]
        gold = [self.verify(self.decode(r), int(i)) for r, i in zip(responses, prompts)]
        batch = lm_layout(rows, max(len(p) + len(r) for p, r in rows))
        return comparisons_layout(
            batch, np.asarray(gold, np.float32), num_responses, annotator, rng
        )

    def sft_dataset(self, n: int, *, seed: int, split: str = "train") -> dict[str, np.ndarray]:
        """Up to `n` demonstrations of `split` in the LM layout (loss on the assistant's turns),
        padded to the longest (`encode_file_examples`)."""
        rows = self._draw(n, seed, split, kinds=("demonstration",))
        return encode_file_examples(
            [self.records[i] for i in rows],
            self.tokenizer,
            self._data,
            max_len=self._max_len,
            what=f"{split} demonstrations",
        )

    # -------------------------------------------------------------- the verifier
    def verify(self, response: str, record: int) -> float:
        """The verifier's score of a response's text to the prompt of `self.records[record]`."""
        return self._score(response, self.records[record].record)

    def reward(self, tokens_BxL, response_mask_BxL, record) -> jax.Array:
        """[B] the verifier's score of the masked tokens, computed on the host."""
        if self._score is None:
            raise ValueError(f"{self._data.path} has no reward: declare a verifier (data.verifier)")

        def host(tokens, mask, index):
            return np.array(
                [
                    self.verify(self.decode(row[keep > 0]), int(i))
                    for row, keep, i in zip(tokens, mask, index, strict=True)
                ],
                np.float32,
            )

        shape = jax.ShapeDtypeStruct(record.shape, jnp.float32)
        return jax.pure_callback(
            host, shape, tokens_BxL, response_mask_BxL, record, vmap_method="sequential"
        )
