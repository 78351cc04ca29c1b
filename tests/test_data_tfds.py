"""TFDS builders write array_record and read back through as_data_source without TensorFlow."""

import json
import sys

import numpy as np

from alignax.data import formats
from alignax.data.tfds_builders import (
    PreferenceFile,
    PreferenceFileConfig,
    ReviewPairs,
    ReviewPairsConfig,
    source_to_arrays,
    source_to_examples,
)


def test_preference_file_round_trip_without_tensorflow(tmp_path):
    records = [
        {"prompt": "p1", "chosen": "good answer", "rejected": "bad"},
        {"prompt": "p2", "chosen": "yes", "rejected": "no no"},
        {"prompt": "p3", "chosen": "same", "rejected": "same"},
    ]  # skipped and counted
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    builder = PreferenceFile(
        config=PreferenceFileConfig(name="toy", path="train.jsonl", on_error="skip"),
        data_dir=tmp_path / "tfds",
    )
    import tensorflow_datasets as tfds

    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=tmp_path / "manual")
    )
    source = builder.as_data_source(split="train")
    examples = sorted(source_to_examples(source), key=lambda e: e.prompt)
    expected, _ = formats.read_examples(tmp_path / "manual" / "train.jsonl", on_error="skip")
    assert [(e.prompt, e.responses, e.ranks) for e in examples] == [
        (e.prompt, e.responses, e.ranks) for e in expected
    ]
    assert isinstance(source[0]["prompt"], bytes)
    assert "tensorflow" not in sys.modules


def test_review_pairs_builder_matches_the_task_dataset(tmp_path):
    builder = ReviewPairs(
        config=ReviewPairsConfig(name="tiny", num_train=6, num_test=3), data_dir=tmp_path / "tfds"
    )
    builder.download_and_prepare()
    arrays = source_to_arrays(builder.as_data_source(split="test"))
    assert arrays["tokens"].shape[:2] == (3, 2) and arrays["tokens"].dtype == np.int32
    from alignax.tasks import get_task

    direct = get_task("review").comparison_dataset(3, seed=2)
    # Records come back in TFDS's shuffled order: compare as sets of rows.
    got = sorted(map(tuple, arrays["tokens"].reshape(3, -1).tolist()))
    assert got == sorted(map(tuple, direct["tokens"].reshape(3, -1).tolist()))
    assert "tensorflow" not in sys.modules
