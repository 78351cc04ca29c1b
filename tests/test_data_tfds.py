"""TFDS builders write array_record and read back through as_data_source without TensorFlow."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from alignax.data import formats
from alignax.data.tfds_builders import (
    PreferenceFile,
    PreferenceFileConfig,
    ReviewPairs,
    ReviewPairsConfig,
    source_to_arrays,
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
    examples = sorted(formats.source_to_examples(source), key=lambda e: e.prompt)
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


def _prepared_preference_dataset(tmp_path, *, with_test: bool):
    """A PreferenceFile dataset from two small JSONL files, and a sentencepiece tokenizer."""
    from alignax.data.tokenizer import SentencePieceTokenizer

    rng = np.random.default_rng(0)
    words = {"good": ["great", "lovely", "fresh"], "bad": ["awful", "bland", "rude"]}

    def records(n):
        return [
            {
                "prompt": f"how was dish {i}?",
                "chosen": f"it was {words['good'][rng.integers(3)]}.",
                "rejected": f"it was {words['bad'][rng.integers(3)]} and cold.",
            }
            for i in range(n)
        ]

    manual = tmp_path / "manual"
    manual.mkdir()
    train, test = records(12), records(5)
    (manual / "train.jsonl").write_text("\n".join(json.dumps(r) for r in train))
    (manual / "test.jsonl").write_text("\n".join(json.dumps(r) for r in test))
    texts = [r[k] for r in train + test for k in ("prompt", "chosen", "rejected")]
    tokenizer = SentencePieceTokenizer.train(texts, vocab_size=40)
    tokenizer.save(tmp_path / "spm.model")
    import tensorflow_datasets as tfds

    builder = PreferenceFile(
        config=PreferenceFileConfig(
            name="toy", path="train.jsonl", test_path="test.jsonl" if with_test else ""
        ),
        data_dir=tmp_path / "tfds",
    )
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return Path(builder.data_dir), manual, tmp_path / "spm.model"


def _rows(arrays):
    return sorted(map(tuple, arrays["tokens"].reshape(len(arrays["tokens"]), -1).tolist()))


def test_experiments_read_a_prepared_tfds_dataset(tmp_path):
    from alignax.data.sources import default_data_config, file_comparisons

    directory, manual, spm = _prepared_preference_dataset(tmp_path, with_test=True)
    assert formats.is_tfds_directory(directory) and not formats.is_tfds_directory(manual)
    data = default_data_config()
    data.path, data.tokenizer = str(directory), str(spm)
    train, evaluation, tokenizer = file_comparisons(data, max_len=24)
    # The same records as the source files, tokenized alike; the test split is the evaluation.
    for arrays, name in ((train, "train.jsonl"), (evaluation, "test.jsonl")):
        direct, _ = formats.load_dataset(manual / name, tokenizer, max_len=24)
        assert _rows(arrays) == _rows(direct)
    assert len(train["tokens"]) == 12 and len(evaluation["tokens"]) == 5
    assert "tensorflow" not in sys.modules
    with pytest.raises(formats.DataError, match=r"no split 'validation'.*\['test', 'train'\]"):
        formats.read_examples(directory, split="validation")


def test_a_tfds_dataset_without_a_test_split_holds_out_a_fraction(tmp_path):
    from alignax.data.sources import default_data_config, file_comparisons

    directory, _, spm = _prepared_preference_dataset(tmp_path, with_test=False)
    data = default_data_config()
    data.path, data.tokenizer, data.eval_fraction = str(directory), str(spm), 0.25
    train, evaluation, _ = file_comparisons(data, max_len=24)
    assert (len(train["tokens"]), len(evaluation["tokens"])) == (9, 3)
    assert not set(_rows(train)) & set(_rows(evaluation))


def test_reward_model_trains_from_a_prepared_tfds_dataset(tmp_path):
    from alignax.workflows import reward_model
    from configs import reward_model as reward_model_config
    from tests.helpers import preset_config, short_run

    directory, _, spm = _prepared_preference_dataset(tmp_path, with_test=True)
    overrides = {"data.path": str(directory), "data.tokenizer": str(spm)}
    summary = reward_model.run(
        preset_config(
            reward_model_config,
            **short_run(**{"train.steps": 40, "train.batch_size": 4}, **overrides),
        ),
        tmp_path / "rm",
    )
    assert summary["steps"] == 40
    assert summary["accuracy"] >= 0.8  # on the 5 test-split pairs: the words separate them


def test_a_prepared_chat_file_keeps_its_turns_for_the_template_and_its_record(tmp_path):
    """Chat records come back as chat turns, so a checkpoint's template writes them as it writes
    the JSONL file's; the record comes back whole, for a verifier."""
    from alignax.data.sources import load_tokenizer
    from tests.helpers import save_chat_tokenizer

    save_chat_tokenizer(tmp_path / "checkpoint")
    tokenizer = load_tokenizer(str(tmp_path / "checkpoint"))
    user = lambda text: [{"role": "user", "content": text}]
    reply = lambda text: [{"role": "assistant", "content": text}]
    records = [
        {"prompt": user(f"q{i}"), "chosen": reply("yes"), "rejected": reply("no"), "id": i}
        for i in range(3)
    ]
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    builder = PreferenceFile(
        config=PreferenceFileConfig(name="chat", path=str(tmp_path / "manual" / "chat.jsonl")),
        data_dir=tmp_path / "tfds",
    )
    builder.download_and_prepare()
    prepared, _ = formats.load_dataset(builder.data_dir, tokenizer, max_len=48)
    direct, _ = formats.load_dataset(tmp_path / "manual" / "chat.jsonl", tokenizer, max_len=48)
    assert _rows(prepared) == _rows(direct)  # (a plain-text prompt is tokenized otherwise)
    examples = formats.read_examples(builder.data_dir)[0]
    assert {e.record["id"]: e.messages for e in examples} == {
        i: tuple(user(f"q{i}")) for i in range(3)
    }
