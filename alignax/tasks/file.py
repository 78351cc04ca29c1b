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
prompt). Training prompts are the file's minus a held-out `data.eval_fraction` (or all of them,
with `data.eval_path`, or a prepared TFDS dataset's test split, for evaluation), split as the
comparisons of `alignax.data.sources` are.

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

from alignax.data.batching import pad_to_bucket
from alignax.data.formats import (
    Example,
    encode_examples,
    is_tfds_directory,
    read_examples,
    tfds_splits,
)
from alignax.data.sources import PAD_MULTIPLE, data_tokenizer, held_out_split

VERIFIERS = ("", "exact", "regex")  # or 'package.module:function'


def verifier_from_config(data_config) -> Callable[[str, dict], float] | None:
    """The config's verifier as `score(response, record) -> float` (None without one)."""
    kind, field = data_config.verifier, data_config.answer_field
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

    def __init__(self, data_config, *, max_len: int, seed: int):
        self.tokenizer = data_tokenizer(data_config)
        self.vocab_size = self.tokenizer.vocab_size
        self.pad_id = 0
        self.bos_id, self.eos_id = self.tokenizer.bos_id, self.tokenizer.eos_id
        self.seq_len = max_len
        self._data, self._max_len = data_config, max_len

        def read(path, split="train"):
            examples, stats = read_examples(
                path, format=data_config.format, on_error=data_config.on_error, split=split
            )
            print(f"{path} [{split}]: {stats.report()}", flush=True)
            return examples

        train = read(data_config.path)
        if data_config.eval_path:
            evaluation = read(data_config.eval_path, split="test")
        elif is_tfds_directory(data_config.path) and "test" in tfds_splits(data_config.path):
            evaluation = read(data_config.path, split="test")
        else:
            keep, held_out = held_out_split(len(train), data_config, seed)
            train, evaluation = [train[i] for i in keep], [train[i] for i in held_out]
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
            "demonstrations": any(e.kind == "demonstration" for e in self.records),
            "gold_reward": self._score is not None,
        }
        self.capabilities = frozenset(name for name, present in has.items() if present)

    # -------------------------------------------------------------- the tokenizer's interface
    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    # -------------------------------------------------------------- datasets
    def _draw(self, n: int, seed: int, split: str, kinds: Sequence[str] | None) -> np.ndarray:
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
        return rows[np.random.default_rng(seed).permutation(len(rows))[:n]]

    def prompt_dataset(self, n: int, *, seed: int, split: str) -> dict[str, np.ndarray]:
        """Up to `n` prompts of `split` (every record's prompt), left-padded to the longest
        (at most half of max_len; longer prompts keep their end), and `record` [n]."""
        rows = self._draw(n, seed, split, kinds=None)
        prompts = [
            Example("prompt", r.prompt, where=r.where, messages=r.messages)
            for r in (self.records[i] for i in rows)
        ]
        batch, _ = encode_examples(prompts, self.tokenizer, max_len=self._max_len)
        width = int(batch["prompt_mask"].sum(1).max())
        return {
            "prompt_tokens": batch["prompt_tokens"][:, -width:],
            "prompt_mask": batch["prompt_mask"][:, -width:],
            "record": rows.astype(np.int32),
        }

    def sft_dataset(self, n: int, *, seed: int, split: str = "train") -> dict[str, np.ndarray]:
        """Up to `n` demonstrations of `split` in the LM layout (loss on the assistant's turns),
        padded to the longest (rounded up to PAD_MULTIPLE)."""
        rows = self._draw(n, seed, split, kinds=("demonstration",))
        batch, stats = encode_examples(
            [self.records[i] for i in rows],
            self.tokenizer,
            max_len=self._max_len,
            on_error=self._data.on_error,
        )
        if stats.truncated:
            print(f"{self._data.path} [{split}]: {stats.report()}", flush=True)
        return pad_to_bucket(batch, multiple=PAD_MULTIPLE)

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
