"""TFDS dataset builders (array_record files, read back without TensorFlow).

    builder = PreferenceFile(config=PreferenceFileConfig(name="hh", path="train.jsonl"),
                             data_dir=workdir / "tfds")
    builder.download_and_prepare()
    source = builder.as_data_source(split="train")     # random access: source[i] -> dict
    source[0]["prompt"]                                   # bytes

    builder = ReviewPairs(config=ReviewPairsConfig(name="seed0", num_train=1000),
                          data_dir=workdir / "tfds")

`PreferenceFile` validates its input file with alignax.data.formats (bad records raise DataError
naming file:line, or are skipped and counted with `on_error="skip"`), and stores every record in
one schema: prompt (text), responses (list of text), ranks (list of int, comparisons), label
(int, unpaired; -1 otherwise), answer (text, verifiable), messages (the prompt's chat turns as
JSON text, "[]" for a plain prompt) and record (the record as read, JSON text, for a verifier).
Tokenization happens after loading, so one prepared dataset serves any tokenizer (a chat
template writes the turns then, as for a JSONL file) and max length. The input path may be given
directly in the config or as a file name under the download manager's `manual_dir`.

`ReviewPairs` stores the built-in review task's labelled comparisons already tokenized
(tokens/input_mask/loss_mask [K, L], ranks [K], gold_reward [K]).

TensorFlow is never imported: `file_format="array_record"` and `as_data_source` decode records
with numpy (checked in tests/test_data_tfds.py).

Each builder sets `code_path` (where tfds looks for metadata next to the module) to this file:
tfds 4.9.10's default lookup touches `importlib_resources`, a dependency of etils[epath] that
is not installed here, and the file is where it would look anyway.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from alignax.data import formats
from alignax.tasks import Annotator, get_task, review_config


class _ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Writes array_record files by default (tfrecord would need TensorFlow)."""

    code_path = epath.Path(__file__)

    def __init__(self, **kwargs):
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)


@dataclasses.dataclass
class PreferenceFileConfig(tfds.core.BuilderConfig):
    """`path`: a .jsonl/.parquet file (absolute, or relative to manual_dir); `test_path`
    optional; `format` as in alignax.data.formats; `on_error` "raise" or "skip"."""

    path: str = ""
    test_path: str = ""
    format: str = "auto"
    on_error: str = "raise"


class PreferenceFile(_ArrayRecordBuilder):
    """Preference / ranking / KTO / verifiable records from a local file."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.1.0": "messages and record: the chat turns and the record as read"}
    BUILDER_CONFIGS = [PreferenceFileConfig(name="default")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Point PreferenceFileConfig.path at a .jsonl or .parquet file."

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "prompt": tfds.features.Text(),
                    "responses": tfds.features.Sequence(tfds.features.Text()),
                    "ranks": tfds.features.Sequence(np.int32),
                    "label": np.int32,
                    "answer": tfds.features.Text(),
                    "where": tfds.features.Text(),
                    "messages": tfds.features.Text(),
                    "record": tfds.features.Text(),
                }
            ),
        )

    def _resolve(self, dl_manager, path: str) -> Path:
        candidate = Path(path)
        if not candidate.is_absolute() and dl_manager.manual_dir is not None:
            candidate = Path(dl_manager.manual_dir) / path
        if not candidate.exists():
            raise FileNotFoundError(f"PreferenceFileConfig.path: {candidate} does not exist")
        return candidate

    def _split_generators(self, dl_manager):
        config = self.builder_config
        if not config.path:
            raise ValueError("PreferenceFileConfig.path is empty; give a .jsonl/.parquet file")
        splits = {"train": self._generate_examples(self._resolve(dl_manager, config.path))}
        if config.test_path:
            splits["test"] = self._generate_examples(self._resolve(dl_manager, config.test_path))
        return splits

    def _generate_examples(self, path: Path):
        config = self.builder_config
        examples, stats = formats.read_examples(
            path, format=config.format, on_error=config.on_error
        )
        if sum(stats.skipped.values()):
            print(f"[PreferenceFile] {path}: {stats.report()}", flush=True)
        for i, ex in enumerate(examples):
            yield (
                i,
                {
                    "prompt": ex.prompt,
                    "responses": list(ex.responses),
                    "ranks": list(ex.ranks),
                    "label": ex.label,
                    "answer": ex.answer,
                    "where": ex.where,
                    "messages": json.dumps(list(ex.messages)),
                    "record": json.dumps(ex.record, default=str),
                },
            )


@dataclasses.dataclass
class ReviewPairsConfig(tfds.core.BuilderConfig):
    """Comparisons from the built-in review task (task seed, sizes, annotator)."""

    task_seed: int = 0
    num_train: int = 1024
    num_test: int = 256
    num_responses: int = 2
    annotator_kind: str = "hard"
    annotator_temperature: float = 1.0
    flip_rate: float = 0.0


class ReviewPairs(_ArrayRecordBuilder):
    """Gold-labelled comparisons of the synthetic review language, tokenized."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [ReviewPairsConfig(name="default")]

    def _task(self):
        config = review_config()
        config.seed = self.builder_config.task_seed
        return get_task("review", config)

    def _info(self) -> tfds.core.DatasetInfo:
        task = self._task()
        k, length = self.builder_config.num_responses, task.seq_len
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "tokens": tfds.features.Tensor(shape=(k, length), dtype=np.int32),
                    "input_mask": tfds.features.Tensor(shape=(k, length), dtype=np.int32),
                    "loss_mask": tfds.features.Tensor(shape=(k, length), dtype=np.int32),
                    "ranks": tfds.features.Tensor(shape=(k,), dtype=np.int32),
                    "gold_reward": tfds.features.Tensor(shape=(k,), dtype=np.float32),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        config = self.builder_config
        return {
            "train": self._generate_examples(config.num_train, seed=1),
            "test": self._generate_examples(config.num_test, seed=2),
        }

    def _generate_examples(self, n: int, seed: int):
        config = self.builder_config
        annotator = Annotator(config.annotator_kind, config.annotator_temperature, config.flip_rate)
        data = self._task().comparison_dataset(
            n, seed=seed, annotator=annotator, num_responses=config.num_responses
        )
        for i in range(n):
            yield i, {k: v[i] for k, v in data.items()}


def source_to_arrays(source) -> dict[str, np.ndarray]:
    """Stacks every record of a tensor-only data source (e.g. ReviewPairs) into arrays."""
    records = [source[i] for i in range(len(source))]
    return {k: np.stack([r[k] for r in records]) for k in records[0]} if records else {}
