"""Batching: resumable deterministic iteration, bucketed padding, LM packing; the LM and prompts
layouts every task builds its batches in."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from alignax.data.batching import (
    BatchIterator,
    bucket_length,
    chunk_rows,
    pack_sequences,
    pad_to_bucket,
)
from alignax.data.layouts import LM_KEYS, lm_layout, prompt_layout
from alignax.models import positions_from_segments


def dataset(n=10, length=12):
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, length, size=n)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    tokens = (np.arange(n)[:, None] * 100 + np.arange(length)[None] + 3) * mask
    return {
        "tokens": tokens.astype(np.int32),
        "input_mask": mask,
        "loss_mask": mask,
        "label": np.arange(n),
    }


def test_restore_gives_exactly_the_same_subsequent_batches():
    data = dataset()
    run = BatchIterator(data, batch_size=3, seed=7)
    for _ in range(4):  # crosses the epoch boundary (3 batches per epoch)
        next(run)
    saved = json.loads(json.dumps(run.state()))  # it goes through a JSON checkpoint
    expected = [next(run) for _ in range(5)]
    resumed = BatchIterator(data, batch_size=3, seed=7)
    resumed.restore(saved)
    for a, b in zip(expected, [next(resumed) for _ in range(5)]):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_each_epoch_is_a_seeded_permutation_without_repeats():
    data = dataset(n=12)
    it = BatchIterator(data, batch_size=4, seed=1)
    epoch0 = np.concatenate([next(it)["label"] for _ in range(3)])
    epoch1 = np.concatenate([next(it)["label"] for _ in range(3)])
    assert sorted(epoch0) == sorted(epoch1) == list(range(12))
    assert not np.array_equal(epoch0, epoch1)
    again = BatchIterator(data, batch_size=4, seed=1)
    np.testing.assert_array_equal(np.concatenate([next(again)["label"] for _ in range(3)]), epoch0)
    assert it.state() == {"epoch": 1, "index": 12, "seed": 1}


def test_restore_refuses_a_state_from_another_seed():
    it = BatchIterator(dataset(), batch_size=2, seed=0)
    with pytest.raises(ValueError, match="seed"):
        it.restore({"epoch": 0, "index": 2, "seed": 1})


def test_num_epochs_stops_and_partial_batches_are_dropped():
    it = BatchIterator(dataset(n=10), batch_size=4, seed=0, num_epochs=2)
    assert len(list(it)) == 4  # 2 full batches per epoch, the remainder of 2 dropped


def test_chunks_hold_the_rows_in_a_power_of_two_up_to_the_chunk_size():
    # Few rows pad to the power of two that holds them, never to the full chunk; many rows
    # run in chunks of the full size.
    assert [chunk_rows(n, 1024) for n in (1, 2, 3, 64, 65, 1000, 1024, 5000)] == [
        2,
        2,
        4,
        64,
        128,
        1024,
        1024,
        1024,
    ]
    assert chunk_rows(100, 48) == 48


def test_bucketing_trims_padding_to_a_multiple_and_keeps_every_real_token():
    data = dataset(n=10, length=40)
    batch = next(BatchIterator(data, batch_size=5, seed=0, bucket_multiple=8))
    length = batch["tokens"].shape[1]
    assert length % 8 == 0 and length >= batch["input_mask"].sum(axis=1).max()
    assert bucket_length(17, buckets=(16, 32, 64)) == 32 and bucket_length(17, multiple=8) == 24
    with pytest.raises(ValueError, match="largest bucket"):
        bucket_length(65, buckets=(16, 32, 64))


def test_left_padded_prompts_are_trimmed_on_the_left():
    prompt_tokens = np.array([[0, 0, 0, 0, 0, 1, 5], [0, 0, 0, 0, 1, 5, 6]], np.int32)
    batch = pad_to_bucket(
        {"prompt_tokens": prompt_tokens, "prompt_mask": (prompt_tokens > 0).astype(np.int32)},
        multiple=4,
    )
    np.testing.assert_array_equal(batch["prompt_tokens"], [[0, 0, 1, 5], [0, 1, 5, 6]])


def test_packing_segments_positions_and_loss_mask():
    seqs = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 10, 2]]
    packed = pack_sequences(seqs, seq_len=8)
    np.testing.assert_array_equal(
        packed["tokens"], [[1, 5, 6, 2, 1, 7, 2, 0], [1, 8, 9, 10, 2, 0, 0, 0]]
    )
    np.testing.assert_array_equal(packed["segment_ids"][0], [1, 1, 1, 1, 2, 2, 2, 0])
    positions = positions_from_segments(jnp.asarray(packed["segment_ids"]))
    np.testing.assert_array_equal(positions[0], [0, 1, 2, 3, 0, 1, 2, 0])
    np.testing.assert_array_equal(positions[1], [0, 1, 2, 3, 4, 0, 1, 2])  # padding: unused
    # The first token of each segment is never a target, so no loss crosses a boundary.
    np.testing.assert_array_equal(packed["loss_mask"][0], [0, 1, 1, 1, 0, 1, 1, 0])
    assert packed["input_mask"].sum() == sum(len(s) for s in seqs)


def test_lm_layout_puts_the_loss_on_the_response_only():
    batch = lm_layout([([1, 5, 6], [7, 2]), ([1, 9], [])], width=6, pad_id=3)
    np.testing.assert_array_equal(batch["tokens"], [[1, 5, 6, 7, 2, 3], [1, 9, 3, 3, 3, 3]])
    np.testing.assert_array_equal(batch["input_mask"], [[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(batch["loss_mask"], [[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]])
    assert tuple(batch) == LM_KEYS


def test_prompt_layout_left_pads_and_a_long_row_is_named():
    batch = prompt_layout([[1, 5, 6], [1]], width=4, pad_id=3)
    np.testing.assert_array_equal(batch["prompt_tokens"], [[3, 1, 5, 6], [3, 3, 3, 1]])
    np.testing.assert_array_equal(batch["prompt_mask"], [[0, 1, 1, 1], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match=r"prompt 1 has 5 tokens > 4 \(prompt_len\)"):
        prompt_layout([[1], [1, 2, 3, 4, 5]], width=4, hint=" (prompt_len)")
    with pytest.raises(ValueError, match="text 0 has 3 tokens > 2"):
        lm_layout([([1, 2], [3])], width=2)
