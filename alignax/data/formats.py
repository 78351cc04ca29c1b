"""Preference-data files (JSONL, gzipped JSONL, Parquet; one file, a directory of shards as a
hub download lays them out, or a glob pattern) in the common formats, validated, into batch
arrays.

    examples, stats = read_examples("train.jsonl")                  # format auto-detected
    batch, stats = load_dataset("train.jsonl", tokenizer, max_len=512, on_error="skip")
    print(stats.report())

Formats (`format=`; "auto" detects each record's format from its keys and takes the most common
one, so a stray record is blamed at its own line, even when it is the first):
- "pairs":       {prompt, chosen, rejected}; chosen/rejected may be lists of chat messages
                 {role, content}: the last assistant turn is the response, the earlier turns the
                 prompt (a single user turn is used verbatim; more turns are rendered in the
                 "\\n\\nHuman: ...\\n\\nAssistant:" transcript style). Detected when "prompt" is
                 present or chosen is a list. `prompt` may itself be a list of chat turns, with
                 one assistant turn in chosen and in rejected (TRL's conversational format).
- "transcripts": {chosen, rejected} full HH-RLHF-style transcripts "\\n\\nHuman: ...\\n\\nAssistant:
                 ..."; the prompt is the longest common prefix ending at an "\\n\\nAssistant:" turn
                 marker, the responses are the rest.
- "rankings":    {prompt, completions, ranks} K-way rankings, ranks 0 = best.
- "unpaired":    {prompt, completion, label} (KTO; label 1/true = desirable).
- "completions": {prompt, completion} demonstrations for SFT (TRL's prompt-completion format);
                 the completion may be a list holding one assistant turn.
- "conversations": {messages} demonstrations for SFT (TRL's conversational format), ending
                 with an assistant turn: the loss is on every assistant turn (as the chat
                 template writes it), the other turns are context (`conversation_pieces`).
- "verifiable":  {prompt, answer}.
- "prompts":     {prompt} alone (PPO, GRPO: the policy answers; any other format's prompts serve
                 too, see alignax.tasks.file).

Bad input never passes silently: each problem raises `DataError` naming file:line (1-based;
Parquet rows are numbered from 1 too), or with `on_error="skip"` is skipped and counted by
reason in the returned `ReadStats`. Reasons: malformed_json, invalid_utf8, not_an_object,
missing_field, wrong_type, empty_response, identical_responses, no_turn_boundary,
different_prompts, bad_ranks, bad_label, inconsistent_k, other_format, too_long, chat_template.
Blank lines are counted (blank_line) but are not errors. Records truncated to fit `max_len` are
counted (`ReadStats.truncated`) and shown by `ReadStats.report()`. A file with no usable record
raises DataError naming it.

Chat turns and a tokenizer with a chat template (a checkpoint's, `HFTokenizer`): the prompt is
the template's rendering up to the assistant's reply (with the generation prompt) and each
response the template's writing of the reply with its end-of-turn marks (`chat_texts`); the
layout adds BOS and EOS as for any text (a leading BOS in the template is not repeated, and the
reply is cut before an EOS token the template writes). Without a template, the turns are plain
text as above.

A directory holding a prepared TFDS dataset (`alignax.data.tfds_builders.PreferenceFile`, read by
its dataset_info.json) is read like a file: `read_examples(directory, split="test")`. Its
records were validated when it was prepared; TensorFlow is not imported.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alignax.data.hf_tokenizer import HFTokenizer
from alignax.data.layouts import LM_KEYS
from alignax.data.tokenizer import (
    OVERFLOW_POLICIES,
    DataError,
    Tokenizer,
    TooLongError,
    encode_chat_group,
)

FORMATS = (
    "pairs",
    "transcripts",
    "rankings",
    "unpaired",
    "completions",
    "conversations",
    "verifiable",
    "prompts",
)
ON_ERROR = ("raise", "skip")
PROMPT_KINDS = ("verifiable", "prompt")  # examples that give a prompt to answer, no response
ASSISTANT_MARKER = "\n\nAssistant:"
_ROLE_NAMES = {"user": "Human", "human": "Human", "assistant": "Assistant", "system": "System"}


class _Bad(Exception):
    """A problem with one record: (reason, message)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Example:
    """One validated record. `responses` are ordered as in the file (pairs: chosen, rejected)."""

    kind: str  # "comparison" | "unpaired" | "verifiable"
    prompt: str
    responses: tuple[str, ...] = ()
    ranks: tuple[int, ...] = ()  # comparison: rank of each response, 0 = best
    label: int = -1  # unpaired
    answer: str = ""  # verifiable
    where: str = ""  # "file:line"
    # The prompt's chat turns when the record gives them: a tokenizer with a chat template
    # writes the prompt and each response with it (`encode_examples`), else `prompt` (plain).
    messages: tuple[dict, ...] = ()
    # The record as read, for what a verifier compares with (alignax.tasks.file).
    record: dict = dataclasses.field(default_factory=dict, compare=False)


@dataclasses.dataclass
class ReadStats:
    """How many records were read, kept and skipped (per reason), with the first few places."""

    read: int = 0
    kept: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    blank_lines: int = 0
    examples_of_skips: list[str] = dataclasses.field(default_factory=list)
    truncated: int = 0  # kept, but cut to fit max_len
    examples_of_truncation: list[str] = dataclasses.field(default_factory=list)

    def truncate(self, where: str, what: str) -> None:
        self.truncated += 1
        if len(self.examples_of_truncation) < 10:
            self.examples_of_truncation.append(f"{where}: {what}")

    def skip(self, reason: str, where: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples_of_skips) < 10:
            self.examples_of_skips.append(f"{where}: {reason}: {message}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "kept": self.kept,
            "skipped": dict(self.skipped),
            "blank_lines": self.blank_lines,
            "truncated": self.truncated,
        }

    def report(self) -> str:
        lines = [
            f"read {self.read} records, kept {self.kept}, skipped {sum(self.skipped.values())}"
        ]
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.skipped.items())]
        lines += [f"  e.g. {x}" for x in self.examples_of_skips[:5]]
        if self.truncated:
            lines.append(
                f"truncated {self.truncated} of the kept records to fit max_len "
                "(prompt start and/or response end dropped)"
            )
            lines += [f"  e.g. {x}" for x in self.examples_of_truncation[:3]]
        return "\n".join(lines)


# ---------------------------------------------------------------------------- raw records
def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or _Bad) for each non-blank line (gzip-compressed when the
    name ends in .gz, as HH-RLHF's files on the hub are)."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield (
                    number,
                    _Bad("invalid_utf8", f"not valid UTF-8 ({e.reason} at byte {e.start})"),
                )
                continue
            if not text.strip():
                yield number, None
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as e:
                yield number, _Bad("malformed_json", f"malformed JSON: {e.msg} (column {e.colno})")


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq  # lazily: only Parquet users need it

    yield from enumerate(pq.read_table(path).to_pylist(), start=1)


def iter_raw_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(1-based line/row, dict | None for a blank line | _Bad) for a .jsonl or .parquet file."""
    path = Path(path)
    if path.suffix == ".parquet":
        return _iter_parquet(path)
    return _iter_jsonl(path)


DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")


def data_files(path: str | Path) -> list[Path]:
    """The files `path` names: itself, a directory's data files (DATA_SUFFIXES, in every
    subdirectory, sorted: the shards of a dataset downloaded from a hub), or the matches of a
    glob pattern (`ultrafeedback/data/train_prefs-*.parquet`)."""
    where = Path(path)
    if where.is_file():
        return [where]
    if where.is_dir():
        files = sorted(
            f for f in where.rglob("*") if f.is_file() and f.name.endswith(DATA_SUFFIXES)
        )
    elif any(c in str(path) for c in "*?["):  # a glob pattern
        files = sorted(Path(f) for f in glob.glob(str(path), recursive=True) if Path(f).is_file())
    else:
        raise FileNotFoundError(f"{path}: no such file or directory")
    if not files:
        raise DataError(f"{path}: no data files ({', '.join(DATA_SUFFIXES)}) there")
    return files


# ---------------------------------------------------------------------------- parsing
def detect_format(record: dict) -> str:
    """The format whose keys `record` has (see module docstring)."""
    keys = set(record)
    if {"chosen", "rejected"} <= keys:
        return "pairs" if "prompt" in keys or isinstance(record["chosen"], list) else "transcripts"
    if {"completions", "ranks"} <= keys:
        return "rankings"
    if {"completion", "label"} <= keys:
        return "unpaired"
    if {"prompt", "completion"} <= keys:
        return "completions"
    if "messages" in keys:
        return "conversations"
    if {"prompt", "answer"} <= keys:
        return "verifiable"
    if "prompt" in keys:
        return "prompts"
    raise _Bad(
        "missing_field",
        f"cannot detect the format from keys {sorted(keys)}; expected one of "
        "{prompt, chosen, rejected}, {chosen, rejected}, {prompt, completions, ranks}, "
        "{prompt, completion, label}, {prompt, completion}, {messages}, {prompt, answer}, "
        "{prompt}",
    )


def _field(record: dict, key: str, kind=str):
    if key not in record:
        raise _Bad("missing_field", f"missing field {key!r} (has {sorted(record)})")
    value = record[key]
    if not isinstance(value, kind):
        raise _Bad("wrong_type", f"field {key!r} is {type(value).__name__}, expected {kind}")
    return value


def _response(text: str, key: str) -> str:
    if not text.strip():
        raise _Bad("empty_response", f"field {key!r} is an empty response")
    return text


def render_messages(messages: Sequence[dict]) -> str:
    """Prompt text of chat turns: one user turn verbatim, else an HH-style transcript."""
    if len(messages) == 1 and messages[0].get("role") in ("user", "human"):
        return str(messages[0].get("content", ""))
    parts = [
        f"\n\n{_ROLE_NAMES.get(m.get('role'), m.get('role'))}: {m.get('content', '')}"
        for m in messages
    ]
    return "".join(parts) + ASSISTANT_MARKER


def _prompt(record: dict) -> tuple[str, tuple[dict, ...]]:
    """The `prompt` field: text, or chat turns (TRL's conversational format), as (the text, the
    turns or ())."""
    if isinstance(record.get("prompt"), list):
        turns = record["prompt"]
        if not turns or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in turns
        ):
            raise _Bad("wrong_type", "field 'prompt' must be text or a list of {role, content}")
        return render_messages(turns), tuple(turns)
    return _field(record, "prompt"), ()


def _split_messages(messages: list, key: str) -> tuple[list, str]:
    if not messages or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages
    ):
        raise _Bad("wrong_type", f"field {key!r} must be a non-empty list of {{role, content}}")
    if messages[-1]["role"] != "assistant":
        raise _Bad(
            "wrong_type", f"the last turn of {key!r} is {messages[-1]['role']!r}, not assistant"
        )
    return messages[:-1], _response(str(messages[-1]["content"]), key)


def split_transcripts(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen response, rejected response) of two HH-style transcripts."""
    common = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        common += 1
    boundary = chosen.rfind(ASSISTANT_MARKER, 0, common)
    if boundary < 0:
        raise _Bad(
            "no_turn_boundary",
            f"chosen and rejected share no prefix ending at an {ASSISTANT_MARKER!r} marker",
        )
    cut = boundary + len(ASSISTANT_MARKER)
    return chosen[:cut], chosen[cut:].lstrip(" "), rejected[cut:].lstrip(" ")


def parse_record(record: Any, fmt: str, where: str) -> Example:
    """Validates one raw record in format `fmt`; raises _Bad."""
    if not isinstance(record, dict):
        raise _Bad("not_an_object", f"expected a JSON object, got {type(record).__name__}")
    if fmt == "pairs":
        chosen, rejected = record.get("chosen"), record.get("rejected")
        if isinstance(chosen, list) or isinstance(rejected, list):
            turns_c, chosen = _split_messages(_field(record, "chosen", list), "chosen")
            turns_r, rejected = _split_messages(_field(record, "rejected", list), "rejected")
            if turns_c != turns_r:
                raise _Bad("different_prompts", "chosen and rejected have different earlier turns")
            prompt, messages = (
                (render_messages(turns_c), tuple(turns_c)) if turns_c else _prompt(record)
            )
        else:
            prompt, messages = _prompt(record)
            chosen = _response(_field(record, "chosen"), "chosen")
            rejected = _response(_field(record, "rejected"), "rejected")
        responses = (chosen, rejected)
        ranks = (0, 1)
    elif fmt == "transcripts":
        messages = ()
        prompt, chosen, rejected = split_transcripts(
            _field(record, "chosen"), _field(record, "rejected")
        )
        responses = (_response(chosen, "chosen"), _response(rejected, "rejected"))
        ranks = (0, 1)
    elif fmt == "rankings":
        prompt, messages = _prompt(record)
        completions = _field(record, "completions", list)
        ranks = _field(record, "ranks", list)
        if len(completions) < 2 or len(ranks) != len(completions):
            raise _Bad(
                "bad_ranks",
                f"need >= 2 completions and one rank each, got "
                f"{len(completions)} completions, {len(ranks)} ranks",
            )
        if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in ranks):
            raise _Bad("bad_ranks", f"ranks must be non-negative integers, got {ranks}")
        responses = tuple(
            _response(c if isinstance(c, str) else "", f"completions[{i}]")
            for i, c in enumerate(completions)
        )
        ranks = tuple(ranks)
    elif fmt == "unpaired":
        prompt, messages = _prompt(record)
        completion = _response(_field(record, "completion"), "completion")
        label = record.get("label", None)
        if label in (True, 1, "1", "true", "True"):
            label = 1
        elif label in (False, 0, "0", "false", "False"):
            label = 0
        else:
            raise _Bad("bad_label", f"label {label!r} is not one of 1/0/true/false")
        return Example(
            "unpaired",
            prompt,
            (completion,),
            label=label,
            where=where,
            messages=messages,
            record=record,
        )
    elif fmt == "completions":
        prompt, messages = _prompt(record)
        completion = record.get("completion")
        if isinstance(completion, list):
            if len(completion) != 1:
                raise _Bad("wrong_type", "field 'completion' must be text or one assistant turn")
            _, completion = _split_messages(completion, "completion")
        else:
            completion = _response(_field(record, "completion"), "completion")
        return Example(
            "demonstration", prompt, (completion,), where=where, messages=messages, record=record
        )
    elif fmt == "conversations":
        turns, reply = _split_messages(_field(record, "messages", list), "messages")
        if not turns:
            raise _Bad("missing_field", "field 'messages' holds no turn before the reply")
        return Example(
            "demonstration",
            render_messages(turns),
            (reply,),
            where=where,
            messages=tuple(turns),
            record=record,
        )
    elif fmt == "prompts":
        prompt, messages = _prompt(record)
        if not prompt.strip():
            raise _Bad("empty_response", "field 'prompt' is empty")
        return Example("prompt", prompt, where=where, messages=messages, record=record)
    elif fmt == "verifiable":
        prompt, messages = _prompt(record)
        answer = record.get("answer")
        if isinstance(answer, int | float) and not isinstance(answer, bool):
            answer = str(answer)
        if not isinstance(answer, str) or not answer.strip():
            raise _Bad(
                "empty_response" if answer is not None else "missing_field",
                f"field 'answer' must be a non-empty string, got {answer!r}",
            )
        return Example(
            "verifiable", prompt, answer=answer, where=where, messages=messages, record=record
        )
    else:
        raise ValueError(f"format={fmt!r}; allowed: 'auto', {FORMATS}")
    if len(set(responses)) < len(responses):
        raise _Bad("identical_responses", "two responses are identical")
    return Example(
        "comparison", prompt, responses, ranks=ranks, where=where, messages=messages, record=record
    )


def is_tfds_directory(path: str | Path) -> bool:
    """Whether `path` is a prepared TFDS dataset (a directory with dataset_info.json)."""
    path = Path(path)
    return path.is_dir() and (path / "dataset_info.json").is_file()


def tfds_splits(directory: str | Path) -> list[str]:
    """The split names of a prepared TFDS dataset, from its dataset_info.json."""
    info = json.loads((Path(directory) / "dataset_info.json").read_text())
    return sorted(s["name"] for s in info.get("splits", []))


def _read_tfds(directory: Path, split: str) -> list[Example]:
    if split not in (splits := tfds_splits(directory)):
        raise DataError(
            f"{directory} (a prepared TFDS dataset) has no split {split!r}; it has {splits}"
        )
    import tensorflow_datasets as tfds  # heavy: imported only for a prepared dataset

    builder = tfds.builder_from_directory(directory)
    if "prompt" not in builder.info.features:
        raise DataError(
            f"{directory} holds tokenized records ({sorted(builder.info.features)}), not text "
            "preference records: prepare it with alignax.data.tfds_builders.PreferenceFile"
        )
    return source_to_examples(builder.as_data_source(split=split))


def source_to_examples(source) -> list[Example]:
    """PreferenceFile records (a prepared TFDS dataset's) back as Examples (for encode_examples)."""
    out = []
    for i in range(len(source)):
        r = source[i]
        text = lambda x: x.decode("utf-8") if isinstance(x, bytes) else str(x)
        responses = tuple(text(x) for x in r["responses"])
        label, answer = int(r["label"]), text(r["answer"])
        if len(responses) > 1:
            kind = "comparison"
        elif responses:
            kind = "unpaired" if label >= 0 else "demonstration"
        else:
            kind = "verifiable" if answer else "prompt"
        out.append(
            Example(
                kind,
                text(r["prompt"]),
                responses,
                ranks=tuple(int(x) for x in r["ranks"]),
                label=label,
                answer=answer,
                where=text(r["where"]),
                # Datasets prepared before version 1.1.0 kept neither (plain prompts then).
                messages=tuple(json.loads(text(r["messages"]))) if "messages" in r else (),
                record=json.loads(text(r["record"])) if "record" in r else {"answer": answer},
            )
        )
    return out


def read_examples(
    path: str | Path, *, format: str = "auto", on_error: str = "raise", split: str = "train"
) -> tuple[list[Example], ReadStats]:
    """Reads and validates every record of a .jsonl / .parquet file, of the files a directory or
    glob pattern names (`data_files`: a hub download's shards), or of the `split` of a prepared
    TFDS dataset directory.

    Raises DataError naming file:line on the first bad record, or (on_error="skip") skips it
    and counts it in the returned stats.
    """
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"format={format!r}; allowed: 'auto', {FORMATS}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; allowed: {ON_ERROR}")
    path = Path(path)
    if is_tfds_directory(path):
        examples = _read_tfds(path, split)
        return examples, ReadStats(read=len(examples), kept=len(examples))
    stats = ReadStats()
    examples = []
    records = [
        (f"{file}:{number}", record)
        for file in data_files(path)
        for number, record in iter_raw_records(file)
    ]
    fmt = _majority_format(records) if format == "auto" else format
    for where, record in records:
        if record is None:
            stats.blank_lines += 1
            continue
        stats.read += 1
        try:
            if isinstance(record, _Bad):
                raise record
            if fmt is None:  # no record's keys name a format: say why for this one
                if not isinstance(record, dict):
                    raise _Bad(
                        "not_an_object", f"expected a JSON object, got {type(record).__name__}"
                    )
                detect_format(record)
            try:
                examples.append(parse_record(record, fmt, where))
            except _Bad:
                other = _detected(record)
                # A record with a prompt alone lacks the fields of the file's format.
                if format == "auto" and other not in (None, fmt, "prompts"):
                    raise _Bad(
                        "other_format",
                        f"record has the keys of format {other!r}, but most records of this "
                        f"file are {fmt!r} (pass format= to choose)",
                    ) from None
                raise
        except _Bad as bad:
            if on_error == "raise":
                raise DataError(f"{where}: {bad} [{bad.reason}]") from None
            stats.skip(bad.reason, where, str(bad))
    stats.kept = len(examples)
    return examples, stats


def _detected(record) -> str | None:
    if not isinstance(record, dict):
        return None
    try:
        return detect_format(record)
    except _Bad:
        return None


def _majority_format(records: list[tuple[int, Any]]) -> str | None:
    """The most common detectable format (ties: the first seen); None if none is detectable."""
    counts = collections.Counter(_detected(r) for _, r in records)
    counts.pop(None, None)
    if counts:
        return counts.most_common(1)[0][0]  # most_common keeps first-seen order on ties
    return None


# ---------------------------------------------------------------------------- encoding
def _pad(rows: list[np.ndarray], length: int, *, left: bool = False) -> np.ndarray:
    out = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        if left:
            out[i, length - len(row) :] = row
        else:
            out[i, : len(row)] = row
    return out


def chat_texts(tokenizer: Tokenizer, example: Example) -> tuple[str, tuple[str, ...]]:
    """The prompt and responses to encode: written with the tokenizer's chat template when the
    record gave chat turns and the tokenizer has a template (a checkpoint's), else as read."""
    if example.messages and isinstance(tokenizer, HFTokenizer) and tokenizer.chat_template:
        replies = tuple(tokenizer.chat_reply(example.messages, r) for r in example.responses)
        return tokenizer.chat_prompt(example.messages), replies
    return example.prompt, example.responses


def conversation_pieces(tokenizer: Tokenizer, example: Example) -> list[tuple[str, bool]]:
    """A demonstration with assistant turns before its reply, as (text, scored) pieces: every
    assistant turn is scored (the template's writing of it, end-of-turn marks included; the
    last is cut before its EOS, which the layout appends), the rest is context. Written with the
    tokenizer's chat template, else as an "\n\nHuman: ...\n\nAssistant: ..." transcript."""
    turns = [*example.messages, {"role": "assistant", "content": example.responses[0]}]
    if not (isinstance(tokenizer, HFTokenizer) and tokenizer.chat_template):
        pieces = []
        for turn in turns:
            if turn["role"] == "assistant":
                pieces += [(ASSISTANT_MARKER, False), (f" {turn['content']}", True)]
            else:
                role = _ROLE_NAMES.get(turn["role"], turn["role"])
                pieces.append((f"\n\n{role}: {turn['content']}", False))
        return pieces
    pieces, written = [], ""
    for i, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        before = tokenizer.chat_prompt(turns[:i])
        last = i == len(turns) - 1
        reply = (
            tokenizer.chat_reply(turns[:i], turn["content"])
            if last
            else tokenizer.chat_prompt(turns[: i + 1], add_generation_prompt=False)[len(before) :]
        )
        if not before.startswith(written):
            raise ValueError(
                "chat template: a later turn's rendering does not begin with the earlier "
                "turns'; a template that rewrites earlier turns is not supported"
            )
        pieces += [(before[len(written) :], False), (reply, True)]
        written = before + reply
    return pieces


def _conversation_layout(
    tokenizer: Tokenizer, example: Example, max_len: int, overflow: str
) -> dict:
    """BOS + the pieces + EOS, the loss on the scored pieces and EOS, cut to `max_len` at the
    end (keeps the conversation's start; overflow="truncate"); TooLongError when it does not fit
    (other policies) or no scored token fits."""
    tokens, loss = [tokenizer.bos_id], [0]
    for text, scored in conversation_pieces(tokenizer, example):
        ids = tokenizer.encode(text)
        tokens += ids
        loss += [int(scored)] * len(ids)
    tokens.append(tokenizer.eos_id)
    loss.append(1)
    truncated = len(tokens) > max_len
    if truncated and overflow != "truncate":
        raise TooLongError(f"conversation of {len(tokens)} tokens > max_len={max_len}")
    tokens, loss = tokens[:max_len], loss[:max_len]
    if not any(loss):
        raise TooLongError(f"no assistant token within max_len={max_len}")
    return {
        "tokens": np.array(tokens, np.int32),
        "input_mask": np.ones(len(tokens), np.int32),
        "loss_mask": np.array(loss, np.int32),
        "truncated": truncated,
        "prompt_truncated": False,
    }


def encode_examples(
    examples: Sequence[Example],
    tokenizer: Tokenizer,
    *,
    max_len: int,
    max_prompt_len: int | None = None,
    overflow: str = "truncate",
    on_error: str = "raise",
    stats: ReadStats | None = None,
) -> tuple[dict[str, np.ndarray], ReadStats]:
    """Tokenizes validated examples (all of one kind) into the batch layouts of conventions.md.

    comparison:    tokens/input_mask/loss_mask [N, K, max_len], ranks [N, K];
    unpaired:      tokens/input_mask/loss_mask [N, max_len], label [N];
    demonstration: tokens/input_mask/loss_mask [N, max_len];
    verifiable:    prompt_tokens/prompt_mask [N, P] LEFT-padded (P = max_prompt_len, prompts keep
                   their end), answer [N] (object array of strings, host-side);
    prompt:        prompt_tokens/prompt_mask [N, P] as for verifiable.
    Texts that do not fit: see `alignax.data.tokenizer` (overflow) -- "error" raises DataError
    naming file:line, "skip" counts too_long, "truncate" truncates and raises (or, with
    on_error="skip", counts) only when no response token fits.
    """
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow={overflow!r}; allowed: {OVERFLOW_POLICIES}")
    stats = ReadStats(read=len(examples)) if stats is None else stats
    kinds = {e.kind for e in examples}
    if len(kinds) > 1:
        raise ValueError(f"examples mix kinds {sorted(kinds)}")
    kind = kinds.pop() if kinds else "comparison"
    max_prompt_len = max_len // 2 if max_prompt_len is None else max_prompt_len
    rows, extra, num_responses = [], [], None

    def bad(reason: str, where: str, message: str) -> None:
        if reason == "too_long" and overflow == "skip" or on_error == "skip":
            stats.skip(reason, where, message)
        else:
            raise DataError(f"{where}: {message} [{reason}]")

    for ex in examples:
        try:
            prompt, responses = chat_texts(tokenizer, ex)
        except ValueError as e:
            bad("chat_template", ex.where, str(e))
            continue
        if kind in PROMPT_KINDS:
            ids = tokenizer.encode(prompt)
            if 1 + len(ids) > max_prompt_len and overflow != "truncate":
                bad("too_long", ex.where, f"prompt of {1 + len(ids)} tokens > {max_prompt_len}")
                continue
            keep = max_prompt_len - 1  # the prompt keeps its END
            if len(ids) > keep:
                stats.truncate(ex.where, f"prompt of {1 + len(ids)} tokens cut to {max_prompt_len}")
            rows.append(np.array([tokenizer.bos_id, *ids[max(len(ids) - keep, 0) :]]))
            extra.append(ex.answer)
            continue
        if kind == "comparison":
            if num_responses is None:
                num_responses = len(ex.responses)
            if len(ex.responses) != num_responses:
                bad(
                    "inconsistent_k",
                    ex.where,
                    f"{len(ex.responses)} responses, earlier records have {num_responses}",
                )
                continue
        multi_turn = kind == "demonstration" and any(
            m.get("role") == "assistant" for m in ex.messages
        )
        try:
            if multi_turn:
                encoded = [_conversation_layout(tokenizer, ex, max_len, overflow)]
            else:
                encoded = encode_chat_group(
                    tokenizer,
                    prompt,
                    responses,
                    max_len=max_len,
                    max_prompt_len=max_prompt_len,
                    overflow="error" if overflow == "skip" else overflow,
                )
        except TooLongError as e:
            bad("too_long", ex.where, str(e))
            continue
        except ValueError as e:  # a chat template that rewrites earlier turns
            bad("chat_template", ex.where, str(e))
            continue
        cut = [
            name
            for name, key in (("prompt", "prompt_truncated"), ("response", "truncated"))
            if any(e[key] for e in encoded)
        ]
        if cut:
            stats.truncate(ex.where, f"{' and '.join(cut)} cut to fit max_len={max_len}")
        rows.append(encoded)
        extra.append(ex.ranks if kind == "comparison" else ex.label)
    stats.kept = len(rows)

    if kind in PROMPT_KINDS:
        batch = {
            "prompt_tokens": _pad(rows, max_prompt_len, left=True),
            "prompt_mask": _pad([np.ones_like(r) for r in rows], max_prompt_len, left=True),
        }
        if kind == "verifiable":
            batch["answer"] = np.array(extra, dtype=object)
        return batch, stats
    if kind in ("unpaired", "demonstration"):
        batch = {k: _pad([enc[0][k] for enc in rows], max_len) for k in LM_KEYS}
        if kind == "unpaired":
            batch["label"] = np.array(extra, np.int32)
        return batch, stats
    k = num_responses or 2
    batch = {
        key: _pad([e[key] for enc in rows for e in enc], max_len).reshape(len(rows), k, max_len)
        for key in LM_KEYS
    }
    batch["ranks"] = np.array(extra, np.int32).reshape(len(rows), k)
    return batch, stats


def load_dataset(
    path: str | Path,
    tokenizer: Tokenizer,
    *,
    max_len: int,
    format: str = "auto",
    on_error: str = "raise",
    overflow: str = "truncate",
    max_prompt_len: int | None = None,
    split: str = "train",
) -> tuple[dict[str, np.ndarray], ReadStats]:
    """read_examples + encode_examples: a file (or a TFDS directory's `split`) to batch arrays,
    with skip counts per reason. A file with no usable record raises DataError naming it."""
    examples, stats = read_examples(path, format=format, on_error=on_error, split=split)
    if not examples:
        raise DataError(
            f"{path} holds no usable records ({stats.report()}); check the path and the format"
        )
    batch, stats = encode_examples(
        examples,
        tokenizer,
        max_len=max_len,
        max_prompt_len=max_prompt_len,
        overflow=overflow,
        on_error=on_error,
        stats=stats,
    )
    if not stats.kept:
        raise DataError(f"{path}: no record fits max_len={max_len} ({stats.report()})")
    return batch, stats
