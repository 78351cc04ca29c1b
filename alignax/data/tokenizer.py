"""Tokenizers and chat-style encoding of (prompt, response) pairs.

    tokenizer = WordTokenizer(get_task("review").words)          # the built-in tasks
    tokenizer = SentencePieceTokenizer.train(texts, vocab_size=512, model_type="bpe")
    tokenizer.save(workdir / "tokenizer.model"); SentencePieceTokenizer.load(path)
    encoded = encode_chat(tokenizer, prompt, response, max_len=256)

Every tokenizer has pad_id=0, bos_id=1, eos_id=2 (docs/conventions.md); `encode` adds neither BOS
nor EOS. `encode_chat` lays out BOS + prompt + response + EOS with `input_mask` and `loss_mask`
(response tokens and the closing EOS).

Truncation (when BOS + prompt + response + EOS exceeds `max_len`), `overflow=`:
- "truncate": the prompt keeps its END (oldest tokens dropped) within a budget of
  max(max_prompt_len, room left by the response); then the response keeps its START. A
  truncated response gets no EOS (it did not end), so its loss mask covers only the kept
  response tokens. If fewer than `min_response_tokens` response tokens fit, it is an error.
- "error": any text that does not fit raises `TooLongError`.
- "skip": callers (alignax.data.formats) catch `TooLongError` and count a skip.
`TooLongError` is a `DataError` (a `ValueError`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import sentencepiece as spm

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
OVERFLOW_POLICIES = ("truncate", "error", "skip")


class DataError(ValueError):
    """Bad input data. The message names the file and 1-based line where known."""


class TooLongError(DataError):
    """A text does not fit the model's context under the truncation policy."""


@runtime_checkable
class Tokenizer(Protocol):
    pad_id: int
    bos_id: int
    eos_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class WordTokenizer:
    """A fixed vocabulary of words (split on whitespace) or characters (`level="char"`).

    `vocab[0:3]` must be the pad, bos and eos symbols. Unknown words raise ValueError.
    """

    pad_id, bos_id, eos_id = PAD_ID, BOS_ID, EOS_ID

    def __init__(self, vocab: Sequence[str], *, level: str = "word"):
        if level not in ("word", "char"):
            raise ValueError(f"level={level!r}; allowed: 'word', 'char'")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocabulary has duplicate entries")
        self.vocab = tuple(vocab)
        self.level = level
        self._ids = {w: i for i, w in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        pieces = text.split() if self.level == "word" else list(text)
        try:
            return [self._ids[p] for p in pieces]
        except KeyError as e:
            raise ValueError(f"{e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Sequence[int]) -> str:
        special = (self.pad_id, self.bos_id, self.eos_id)
        pieces = [self.vocab[i] for i in ids if i not in special and 0 <= i < len(self.vocab)]
        return (" " if self.level == "word" else "").join(pieces)


class SentencePieceTokenizer:
    """A trained sentencepiece model (BPE or unigram) with pad=0, bos=1, eos=2, unk=3."""

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, 3

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        ids = (self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id())
        if ids != (PAD_ID, BOS_ID, EOS_ID):
            raise ValueError(f"sentencepiece model has pad/bos/eos ids {ids}, expected (0, 1, 2)")

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        vocab_size: int,
        model_type: str = "bpe",
        character_coverage: float = 1.0,
        seed_sentencepiece_size: int = 100_000,
    ) -> SentencePieceTokenizer:
        """Trains on an iterator of texts, in memory (nothing is written until `save`)."""
        if model_type not in ("bpe", "unigram"):
            raise ValueError(f"model_type={model_type!r}; allowed: 'bpe', 'unigram'")
        writer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=writer,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            seed_sentencepiece_size=seed_sentencepiece_size,
            pad_id=PAD_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            unk_id=3,
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
        )
        return cls(writer.getvalue())

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.model_proto)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SentencePieceTokenizer:
        """Reads a model file; a missing file or one that is not a sentencepiece model raises
        ValueError naming the path."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"tokenizer {path}: no such file (a sentencepiece .model file)")
        try:
            return cls(path.read_bytes())
        except ValueError as e:
            if "pad/bos/eos" in str(e):
                raise ValueError(f"tokenizer {path}: {e}") from None
            raise ValueError(
                f"tokenizer {path} is not a sentencepiece model ({str(e).splitlines()[0][:200]}); "
                "give the .model file written by SentencePieceTokenizer.save or spm_train"
            ) from None
        except RuntimeError as e:  # sentencepiece raises RuntimeError on some corrupt protos
            raise ValueError(
                f"tokenizer {path} is not a sentencepiece model ({str(e).splitlines()[0][:200]})"
            ) from None

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID, EOS_ID)])


def truncate_prompt(
    prompt_ids: Sequence[int], longest_response: int, *, max_len: int, max_prompt_len: int
) -> list[int]:
    """The END of the prompt that the truncation policy keeps (see module docstring)."""
    budget = max(max_prompt_len, max_len - 2 - longest_response, 0)
    return list(prompt_ids[max(len(prompt_ids) - budget, 0) :])


def layout(
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    *,
    max_len: int,
    min_response_tokens: int = 1,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
) -> dict[str, np.ndarray]:
    """BOS + prompt + response (+ EOS if it fits) cut to max_len; keeps the response's start.

    Returns unpadded int32 `tokens`, `input_mask`, `loss_mask` and `truncated` (bool: the
    response was cut).
    Raises TooLongError if fewer than `min_response_tokens` response tokens fit.
    """
    room = max_len - 1 - len(prompt_ids)
    truncated = len(response_ids) + 1 > room
    kept = list(response_ids) if not truncated else list(response_ids[: max(room, 0)])
    if len(kept) < min(min_response_tokens, len(response_ids)) or room < 1:
        raise TooLongError(
            f"prompt of {len(prompt_ids)} tokens leaves {max(room, 0)} of max_len={max_len} for "
            f"a response of {len(response_ids)} tokens (min_response_tokens={min_response_tokens})"
        )
    tokens = [bos_id, *prompt_ids, *kept] + ([] if truncated else [eos_id])
    loss = [0] * (1 + len(prompt_ids)) + [1] * (len(tokens) - 1 - len(prompt_ids))
    return {
        "tokens": np.array(tokens, np.int32),
        "input_mask": np.ones(len(tokens), np.int32),
        "loss_mask": np.array(loss, np.int32),
        "truncated": truncated,
    }


def encode_chat_group(
    tokenizer: Tokenizer,
    prompt: str,
    responses: Sequence[str],
    *,
    max_len: int,
    max_prompt_len: int | None = None,
    overflow: str = "truncate",
    min_response_tokens: int = 1,
) -> list[dict[str, np.ndarray]]:
    """Encodes several responses to one prompt; the prompt is truncated once for all of them
    (so chosen and rejected of a pair share the same prompt tokens). Each layout also has
    `prompt_truncated` (bool)."""
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow={overflow!r}; allowed: {OVERFLOW_POLICIES}")
    max_prompt_len = max_len // 2 if max_prompt_len is None else max_prompt_len
    prompt_ids = tokenizer.encode(prompt)
    response_ids = [tokenizer.encode(r) for r in responses]
    longest = max(len(r) for r in response_ids)
    full_prompt = len(prompt_ids)
    if 2 + len(prompt_ids) + longest > max_len:
        if overflow != "truncate":
            raise TooLongError(
                f"BOS + prompt ({len(prompt_ids)}) + response ({longest}) + EOS = "
                f"{2 + len(prompt_ids) + longest} tokens > max_len={max_len}"
            )
        prompt_ids = truncate_prompt(
            prompt_ids, longest, max_len=max_len, max_prompt_len=max_prompt_len
        )
    return [
        {
            **layout(
                prompt_ids,
                r,
                max_len=max_len,
                min_response_tokens=min_response_tokens,
                bos_id=tokenizer.bos_id,
                eos_id=tokenizer.eos_id,
            ),
            "prompt_truncated": len(prompt_ids) < full_prompt,
        }
        for r in response_ids
    ]


def encode_chat(
    tokenizer: Tokenizer, prompt: str, response: str, *, max_len: int, **kwargs
) -> dict[str, np.ndarray]:
    """BOS + prompt + response + EOS with input_mask and loss_mask (see module docstring)."""
    return encode_chat_group(tokenizer, prompt, [response], max_len=max_len, **kwargs)[0]
