"""Preference-file formats: parsing, auto-detection, and bad input naming file:line or counted."""

import json

import numpy as np
import pytest

from alignax.data.formats import DataError, load_dataset, read_examples, split_transcripts
from alignax.data.tokenizer import WordTokenizer

WORDS = WordTokenizer(["<pad>", "<bos>", "<eos>"] + "a b c d e f g h Human: Assistant:".split())


def write_jsonl(path, records):
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_prompt_chosen_rejected_pairs(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a b", "chosen": "c", "rejected": "d e"}])
    batch, stats = load_dataset(path, WORDS, max_len=8)
    assert batch["tokens"].shape == (1, 2, 8) and stats.kept == 1
    np.testing.assert_array_equal(batch["tokens"][0, 0], [1, 3, 4, 5, 2, 0, 0, 0])
    np.testing.assert_array_equal(batch["loss_mask"][0, 1], [0, 0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(batch["ranks"], [[0, 1]])


def test_chat_messages_take_last_assistant_turn_as_response(tmp_path):
    turns = [{"role": "user", "content": "a b"}]
    record = {
        "prompt": "a b",
        "chosen": turns + [{"role": "assistant", "content": "c"}],
        "rejected": turns + [{"role": "assistant", "content": "d"}],
    }
    (ex,), _ = read_examples(write_jsonl(tmp_path / "m.jsonl", [record]))
    assert (ex.prompt, ex.responses) == ("a b", ("c", "d"))
    multi = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    record = {
        "chosen": multi + [{"role": "assistant", "content": "d"}],
        "rejected": multi + [{"role": "assistant", "content": "e"}],
    }
    (ex,), _ = read_examples(write_jsonl(tmp_path / "m2.jsonl", [record]))
    assert ex.prompt == "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:"
    assert ex.responses == ("d", "e")


def test_prompt_as_chat_turns_trls_conversational_format(tmp_path):
    """`prompt` as a list of turns with one assistant turn each for chosen and rejected (TRL's
    conversational preference format), in every format that has a prompt; a malformed turn
    list names its line."""
    user = [{"role": "user", "content": "a b"}]
    record = {
        "prompt": user,
        "chosen": [{"role": "assistant", "content": "c"}],
        "rejected": [{"role": "assistant", "content": "d"}],
    }
    unpaired = {"prompt": user, "completion": "c", "label": 1}
    examples, _ = read_examples(write_jsonl(tmp_path / "c.jsonl", [record]))
    assert (examples[0].prompt, examples[0].responses) == ("a b", ("c", "d"))
    examples, _ = read_examples(write_jsonl(tmp_path / "u.jsonl", [unpaired]))
    assert examples[0].prompt == "a b" and examples[0].label == 1
    bad = {**record, "prompt": [{"role": "user"}]}
    with pytest.raises(DataError, match=r"b.jsonl:2: field 'prompt' must be text or a list"):
        read_examples(write_jsonl(tmp_path / "b.jsonl", [record, bad]))


def test_hh_transcripts_split_at_last_common_assistant_turn():
    prompt = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:"
    # Both responses start with the same word: the split must still be at the turn marker.
    assert split_transcripts(prompt + " d e", prompt + " d f") == (prompt, "d e", "d f")


def test_rankings_unpaired_verifiable_and_auto_detection(tmp_path):
    rank = write_jsonl(
        tmp_path / "r.jsonl", [{"prompt": "a", "completions": ["b", "c", "d"], "ranks": [2, 0, 1]}]
    )
    batch, _ = load_dataset(rank, WORDS, max_len=6)
    assert batch["tokens"].shape == (1, 3, 6)
    np.testing.assert_array_equal(batch["ranks"], [[2, 0, 1]])
    kto = write_jsonl(
        tmp_path / "k.jsonl",
        [
            {"prompt": "a", "completion": "b", "label": True},
            {"prompt": "a", "completion": "c", "label": 0},
        ],
    )
    batch, _ = load_dataset(kto, WORDS, max_len=6)
    assert batch["tokens"].shape == (2, 6)
    np.testing.assert_array_equal(batch["label"], [1, 0])
    ver = write_jsonl(tmp_path / "v.jsonl", [{"prompt": "a b c", "answer": 19}])
    batch, _ = load_dataset(ver, WORDS, max_len=8, max_prompt_len=3)
    np.testing.assert_array_equal(batch["prompt_tokens"], [[1, 4, 5]])  # keeps the prompt's end
    assert list(batch["answer"]) == ["19"]


def test_parquet_is_read_like_jsonl(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"prompt": ["a", "b"], "chosen": ["c", "d"], "rejected": ["e", ""]})
    pq.write_table(table, tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"p\.parquet:2: .*empty response"):
        read_examples(tmp_path / "p.parquet")


def test_a_hub_download_is_read_by_directory_or_pattern_naming_each_shard(tmp_path):
    """The layout of a dataset downloaded from a hub: Parquet shards of each split under data/
    (UltraFeedback-binarized: train_prefs-0000k-of-0000n.parquet with prompt, chosen and
    rejected as chat turns, and more columns), or gzipped JSONL transcripts (HH-RLHF)."""
    pa = pytest.importorskip("pyarrow")
    import gzip

    import pyarrow.parquet as pq

    def turns(prompt, reply):
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]

    data = tmp_path / "ultrafeedback" / "data"
    data.mkdir(parents=True)
    for split, shards in (("train_prefs", 2), ("test_prefs", 1)):
        for k in range(shards):
            prompts = [f"{split} {k} {i}" for i in range(3)]
            table = pa.table(
                {
                    "prompt": prompts,
                    "prompt_id": [str(i) for i in range(3)],
                    "chosen": [turns(p, "good") for p in prompts],
                    "rejected": [turns(p, "bad") for p in prompts],
                    "score_chosen": [8.0] * 3,
                }
            )
            pq.write_table(table, data / f"{split}-{k:05d}-of-{shards:05d}.parquet")
    train, _ = read_examples(data / "train_prefs-*.parquet")
    assert [e.prompt for e in train] == [f"train_prefs {k} {i}" for k in (0, 1) for i in range(3)]
    assert train[4].where == f"{data}/train_prefs-00001-of-00002.parquet:2"
    assert train[0].responses == ("good", "bad")
    everything, _ = read_examples(tmp_path / "ultrafeedback")  # every shard of every split
    assert len(everything) == 9
    hh = tmp_path / "hh" / "helpful-base"
    hh.mkdir(parents=True)
    with gzip.open(hh / "train.jsonl.gz", "wt") as f:
        f.write(
            json.dumps(
                {
                    "chosen": "\n\nHuman: hi\n\nAssistant: hello",
                    "rejected": "\n\nHuman: hi\n\nAssistant: go",
                }
            )
            + "\n"
        )
        f.write('{"chosen": \n')
    with pytest.raises(DataError, match=r"train\.jsonl\.gz:2: malformed JSON"):
        read_examples(tmp_path / "hh")
    with pytest.raises(DataError, match=r"nothing-\*\.parquet: no data files"):
        read_examples(hh / "nothing-*.parquet")
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        read_examples(hh / "train.jsonl")


GOOD = {"prompt": "a", "chosen": "b", "rejected": "c"}


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        (b'{"prompt": "a", "chosen": ', "malformed_json"),
        (json.dumps({"prompt": "a", "chosen": "b"}).encode(), "missing_field"),
        (json.dumps({"prompt": "a", "chosen": " ", "rejected": "c"}).encode(), "empty_response"),
        (
            json.dumps({"prompt": "a", "chosen": "b", "rejected": "b"}).encode(),
            "identical_responses",
        ),
        (b'{"prompt": "a", "chosen": "b\xff", "rejected": "c"}', "invalid_utf8"),
        (json.dumps({"prompt": "a", "chosen": 3, "rejected": "c"}).encode(), "wrong_type"),
    ],
)
def test_bad_record_raises_naming_file_and_line_or_is_counted(tmp_path, bad_line, reason):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, GOOD, bad_line, GOOD])
    with pytest.raises(DataError, match=rf"bad\.jsonl:3: .*\[{reason}\]"):
        read_examples(path)
    examples, stats = read_examples(path, on_error="skip")
    assert len(examples) == 3 and stats.kept == 3 and stats.read == 4
    assert dict(stats.skipped) == {reason: 1} and "bad.jsonl:3" in stats.report()


def test_text_longer_than_context_raises_with_line_or_is_skipped(tmp_path):
    long = {"prompt": "a", "chosen": "b c d e f g h", "rejected": "c"}
    path = write_jsonl(tmp_path / "long.jsonl", [GOOD, long])
    with pytest.raises(DataError, match=r"long\.jsonl:2: .*\[too_long\]"):
        load_dataset(path, WORDS, max_len=6, overflow="error")
    batch, stats = load_dataset(path, WORDS, max_len=6, overflow="skip")
    assert batch["tokens"].shape == (1, 2, 6) and dict(stats.skipped) == {"too_long": 1}
    batch, stats = load_dataset(path, WORDS, max_len=6, overflow="truncate")
    assert batch["tokens"].shape == (2, 2, 6) and not stats.skipped
    # An unfittable text (prompt budget leaves no response token) under "truncate".
    path = write_jsonl(tmp_path / "long.jsonl", [GOOD, {**long, "prompt": "a b c d e f"}])
    with pytest.raises(DataError, match=r"long\.jsonl:2: .*\[too_long\]"):
        load_dataset(path, WORDS, max_len=6, max_prompt_len=5, overflow="truncate")


def test_blank_lines_are_counted_not_errors(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [GOOD, b"", GOOD])
    examples, stats = read_examples(path)
    assert len(examples) == 2 and stats.blank_lines == 1


def test_unknown_format_and_policy_name_allowed_values(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [GOOD])
    with pytest.raises(ValueError, match="allowed"):
        read_examples(path, format="csv")
    with pytest.raises(ValueError, match="allowed"):
        read_examples(path, on_error="ignore")
    with pytest.raises(DataError, match="p.jsonl:1: cannot detect"):
        read_examples(write_jsonl(tmp_path / "p.jsonl", [{"text": "a"}]))
