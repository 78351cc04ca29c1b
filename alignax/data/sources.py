"""Where a workflow's comparisons come from: a local preference file (real data) with its
tokenizer, instead of the built-in task.

    config.data.path = "/data/ultrafeedback_train.jsonl"   # JSONL / Parquet, see formats.py
    config.data.tokenizer = "/models/smollm2.gguf"          # or an HF directory, or spm.model

`data.path` may also name a prepared TFDS dataset (the version directory that holds
dataset_info.json, written by alignax.data.tfds_builders.PreferenceFile): training reads its
"train" split; evaluation reads `data.eval_path` if set (a TFDS directory there gives its "test"
split), else the dataset's own "test" split if it has one, else the records of a held-out
`eval_fraction` of the prompts (`file_examples`: by a stable hash of each prompt).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import ml_collections
import numpy as np

from alignax.data.batching import pad_to_bucket
from alignax.data.formats import (
    Example,
    encode_examples,
    is_tfds_directory,
    read_examples,
    tfds_splits,
)
from alignax.data.hf_tokenizer import HFTokenizer
from alignax.data.tokenizer import DataError, SentencePieceTokenizer
from alignax.models.gguf import gguf_tokenizer

# A file's records are padded to its longest (rounded up to this), not to model.max_len: padding
# every row has costs a step its compute and nothing else (DPO from SmolLM2 on short chats at
# max_len 256: 20 s a step padded to max_len, 3.4 s padded to the longest).
PAD_MULTIPLE = 16


def default_data_config(*, verifier: bool = False) -> ml_collections.ConfigDict:
    """The `data` section: a local file instead of the built-in task. With `verifier`, for the
    stages that score a policy's answers (SFT's and DPO's evaluations, DPO's labels of samples
    of a file of prompts, PPO, the GRPO family, best-of-n): the verifier of the file's records
    (alignax/tasks/file.py)."""
    section = ml_collections.ConfigDict(
        {
            "path": "",  # '' = the built-in task; else a local preference file
            "eval_path": "",  # '' = hold out eval_fraction of `path`
            "eval_fraction": 0.05,
            # Required with `path`: a checkpoint's own (an HF directory with tokenizer.json, a
            # GGUF file) or a sentencepiece model file.
            "tokenizer": "",
            "format": "auto",
            "on_error": "raise",  # or "skip": malformed records are counted and reported
        }
    )
    if verifier:
        section.update(
            verifier="",  # '' (none), 'exact', 'regex' or 'package.module:function'
            answer_field="answer",  # the record field a response is compared with
            answer_pattern="",  # 'regex': the answer is its first match (first group, if any)
        )
    return section


def file_examples(data_config) -> tuple[list[Example], list[Example]]:
    """(training, evaluation) records of `data.path`: evaluation reads `data.eval_path` if set,
    else a prepared TFDS dataset's own "test" split if it has one, else the records of the
    held-out `data.eval_fraction` of the file's distinct prompts: those first in the order of a
    stable hash of their text. So the split is the same for every stage, seed and loader of a
    file (no round or seed trains on another's held-out prompts), and every record of a prompt
    is on one side."""

    def read(path, split="train"):
        examples, stats = read_examples(
            path, format=data_config.format, on_error=data_config.on_error, split=split
        )
        print(f"{path} [{split}]: {stats.report()}", flush=True)
        if not examples:
            raise DataError(f"{path} holds no usable records ({stats.report()})")
        return examples

    records = read(data_config.path)
    if data_config.eval_path:
        return records, read(data_config.eval_path, split="test")
    if is_tfds_directory(data_config.path) and "test" in tfds_splits(data_config.path):
        return records, read(data_config.path, split="test")
    fraction = data_config.eval_fraction
    if not 0 < fraction < 1:
        raise ValueError(f"data.eval_fraction={fraction!r}: must be in (0, 1)")
    prompts = sorted({e.prompt for e in records}, key=_stable_hash)
    num_eval = max(1, round(fraction * len(prompts)))
    if num_eval >= len(prompts):
        raise ValueError(
            f"{data_config.path} holds {len(prompts)} distinct prompts: too few to hold out "
            f"data.eval_fraction={fraction} of them and train on the rest (or give "
            "data.eval_path)"
        )
    held_out = set(prompts[:num_eval])
    return (
        [e for e in records if e.prompt not in held_out],
        [e for e in records if e.prompt in held_out],
    )


def _stable_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def encode_file_examples(examples, tokenizer, data_config, *, max_len: int, what: str) -> dict:
    """`examples` of a file in the batch layout (`encode_examples`), padded to the longest row
    (PAD_MULTIPLE), not to `max_len`; `what` names them in the report."""
    arrays, stats = encode_examples(
        examples, tokenizer, max_len=max_len, on_error=data_config.on_error
    )
    if stats.truncated or stats.skipped:
        print(f"{data_config.path} ({what}): {stats.report()}", flush=True)
    if not stats.kept:
        raise DataError(f"{data_config.path} ({what}): no record fits max_len={max_len}")
    return pad_to_bucket(arrays, multiple=PAD_MULTIPLE)


def load_tokenizer(path: str | Path):
    """A checkpoint directory's tokenizer.json (with its chat template), a GGUF file's tokenizer
    or a sentencepiece model file."""
    where = Path(path)
    if where.is_dir():
        return HFTokenizer.load(where)
    if where.suffix == ".gguf":
        return gguf_tokenizer(where)
    return SentencePieceTokenizer.load(where)


def data_tokenizer(data_config):
    """The tokenizer `data.tokenizer` names (required with `data.path`)."""
    if not data_config.tokenizer:
        raise ValueError(
            "data.tokenizer is required with data.path (an HF checkpoint directory, a GGUF file "
            "or a sentencepiece model file)"
        )
    return load_tokenizer(data_config.tokenizer)


# What each kind of record a workflow trains on is, for the error when a file holds none.
_RECORDS = {
    "comparison": "comparisons (pairs or rankings)",
    "unpaired": "{prompt, completion, label} records",
}


def encode_records(examples, tokenizer, data_config, *, kind: str, max_len: int, what: str):
    """The `kind` records among `examples` in the batch layout (`encode_file_examples`);
    comparisons' options reordered best-first, so pairs have the chosen response at index 0 as
    the built-in task's comparisons do."""
    examples = [e for e in examples if e.kind == kind]
    if not examples:
        raise ValueError(f"{data_config.path} holds no {_RECORDS[kind]} ({what})")
    arrays = encode_file_examples(examples, tokenizer, data_config, max_len=max_len, what=what)
    if kind != "comparison":
        return arrays
    order = np.argsort(arrays["ranks"], axis=1, kind="stable")
    return {
        k: np.take_along_axis(v, order.reshape(order.shape + (1,) * (v.ndim - 2)), 1)
        for k, v in arrays.items()
    }


def file_comparisons(data_config, *, max_len: int):
    """(train, evaluation) comparison arrays [N, K, L] (+ ranks), best-first (`encode_records`),
    and the tokenizer, from files (`file_examples`)."""
    tokenizer = data_tokenizer(data_config)
    train, evaluation = file_examples(data_config)

    def encode(examples, what):
        return encode_records(
            examples, tokenizer, data_config, kind="comparison", max_len=max_len, what=what
        )

    return encode(train, "training"), encode(evaluation, "evaluation"), tokenizer
