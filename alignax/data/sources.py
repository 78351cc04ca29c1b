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

from alignax.data.formats import is_tfds_directory, load_dataset, tfds_splits
from alignax.data.hf_tokenizer import HFTokenizer
from alignax.data.tokenizer import SentencePieceTokenizer
from alignax.models.gguf import gguf_tokenizer


def default_data_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
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


def load_tokenizer(path: str | Path):
    """A checkpoint directory's tokenizer.json (with its chat template), a GGUF file's tokenizer
    or a sentencepiece model file."""
    where = Path(path)
    if where.is_dir():
        return HFTokenizer.load(where)
    if where.suffix == ".gguf":
        return gguf_tokenizer(where)
    return SentencePieceTokenizer.load(where)


def file_comparisons(data_config, *, max_len: int, seed: int):
    """(train, evaluation) comparison arrays [N, K, L] (+ ranks) and the tokenizer, from files.

    Options are reordered best-first, so pairs have the chosen response at index 0 as the
    built-in task's comparisons do.
    """
    if not 0 < data_config.eval_fraction < 1:
        raise ValueError(f"data.eval_fraction={data_config.eval_fraction!r}: must be in (0, 1)")
    if not data_config.tokenizer:
        raise ValueError(
            "data.tokenizer is required with data.path (an HF checkpoint directory, a GGUF file "
            "or a sentencepiece model file)"
        )
    tokenizer = load_tokenizer(data_config.tokenizer)

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
    permutation = np.random.default_rng(seed).permutation(len(train["tokens"]))
    num_eval = max(1, int(round(data_config.eval_fraction * len(permutation))))
    if num_eval >= len(permutation):
        raise ValueError(
            f"{data_config.path} holds {len(permutation)} comparisons: too few to hold out "
            f"data.eval_fraction={data_config.eval_fraction} and train on the rest"
        )
    evaluation = {k: v[permutation[:num_eval]] for k, v in train.items()}
    train = {k: v[permutation[num_eval:]] for k, v in train.items()}
    return train, evaluation, tokenizer
