"""Where a workflow's comparisons come from: a local preference file (real data) with its
tokenizer, instead of the built-in task.

    config.data.path = "/data/ultrafeedback_train.jsonl"   # JSONL / Parquet, see formats.py
    config.data.tokenizer = "/models/smollm2.gguf"          # or an HF directory, or spm.model

`data.path` may also name a prepared TFDS dataset (the version directory that holds
dataset_info.json, written by alignax.data.tfds_builders.PreferenceFile): training reads its
"train" split; evaluation reads `data.eval_path` if set (a TFDS directory there gives its "test"
split), else the dataset's own "test" split if it has one, else a held-out `eval_fraction`.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np

from alignax.data.batching import pad_to_bucket
from alignax.data.formats import is_tfds_directory, load_dataset, tfds_splits
from alignax.data.hf_tokenizer import HFTokenizer
from alignax.data.tokenizer import SentencePieceTokenizer
from alignax.models.gguf import gguf_tokenizer

# A file's records are padded to its longest (rounded up to this), not to model.max_len: padding
# every row has costs a step its compute and nothing else (DPO from SmolLM2 on short chats at
# max_len 256: 20 s a step, 8x the work of the rows' own length).
PAD_MULTIPLE = 16


def default_data_config(*, verifier: bool = False) -> ml_collections.ConfigDict:
    """The `data` section: a local file instead of the built-in task. With `verifier`, for the
    stages that score a policy's answers (SFT's evaluation, PPO, the GRPO family): the verifier
    of the file's records (alignax/tasks/file.py)."""
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


def held_out_split(num_records: int, data_config, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of a file of `num_records`: `data.eval_fraction` of them,
    drawn with `seed`, held out for evaluation."""
    if not 0 < data_config.eval_fraction < 1:
        raise ValueError(f"data.eval_fraction={data_config.eval_fraction!r}: must be in (0, 1)")
    permutation = np.random.default_rng(seed).permutation(num_records)
    num_eval = max(1, int(round(data_config.eval_fraction * num_records)))
    if num_eval >= num_records:
        raise ValueError(
            f"{data_config.path} holds {num_records} records: too few to hold out "
            f"data.eval_fraction={data_config.eval_fraction} and train on the rest"
        )
    return permutation[num_eval:], permutation[:num_eval]


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


def file_comparisons(data_config, *, max_len: int, seed: int):
    """(train, evaluation) comparison arrays [N, K, L] (+ ranks) and the tokenizer, from files.

    Options are reordered best-first, so pairs have the chosen response at index 0 as the
    built-in task's comparisons do.
    """
    tokenizer = data_tokenizer(data_config)

    def load(path, split="train"):
        arrays, stats = load_dataset(
            path,
            tokenizer,
            max_len=max_len,
            format=data_config.format,
            on_error=data_config.on_error,
            split=split,
        )
        print(f"{path} [{split}]: {stats.report()}", flush=True)
        if "ranks" not in arrays:
            raise ValueError(f"{path} holds no comparisons (pairs or rankings)")
        arrays = pad_to_bucket(arrays, multiple=PAD_MULTIPLE)  # not max_len: the file's longest
        order = np.argsort(arrays["ranks"], axis=1, kind="stable")
        return {
            k: np.take_along_axis(v, order.reshape(order.shape + (1,) * (v.ndim - 2)), 1)
            for k, v in arrays.items()
        }

    train = load(data_config.path)
    if data_config.eval_path:
        return train, load(data_config.eval_path, split="test"), tokenizer
    if is_tfds_directory(data_config.path) and "test" in tfds_splits(data_config.path):
        return train, load(data_config.path, split="test"), tokenizer
    keep, held_out = held_out_split(len(train["tokens"]), data_config, seed)
    return (
        {k: v[keep] for k, v in train.items()},
        {k: v[held_out] for k, v in train.items()},
        tokenizer,
    )
