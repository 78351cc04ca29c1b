"""Sequence packing: a packed row scores each of its sequences exactly as that sequence alone.

`pack_sequences` lays several sequences into one row with segment ids; the model restarts
positions in every segment and lets a token attend only within its segment. The invariance is
checked on per-token log-probs, the SFT loss and its gradient, for RoPE and learned positions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignax import logprobs, objectives
from alignax.data.batching import pack_sequences
from alignax.workflows import sft
from configs import sft as sft_config
from tests.helpers import pad_rows, tiny_model

SEQ_LEN = 16


def _unpacked(sequences, loss_masks):
    tokens, input_mask = (np.asarray(x) for x in pad_rows(sequences, SEQ_LEN))
    loss_mask = np.zeros_like(tokens)
    for i, mask in enumerate(loss_masks):
        loss_mask[i, : len(mask)] = mask
    return {"tokens": tokens, "input_mask": input_mask, "loss_mask": loss_mask}


def _sequences(lengths, seed):
    rng = np.random.default_rng(seed)
    sequences = [[1] + list(rng.integers(3, 32, size=n - 1)) for n in lengths]
    # SFT-style masks: a prompt of 1-3 tokens is not scored.
    loss_masks = [[0] * min(n - 1, rng.integers(1, 4)) for n in lengths]
    loss_masks = [m + [1] * (n - len(m)) for m, n in zip(loss_masks, lengths, strict=True)]
    return sequences, loss_masks


def _token_logps(model, params, batch):
    logits = model.apply(
        params,
        jnp.asarray(batch["tokens"]),
        jnp.asarray(batch["input_mask"]),
        segment_ids_BxL=None if "segment_ids" not in batch else jnp.asarray(batch["segment_ids"]),
    )["logits"]
    return np.asarray(logprobs.token_logps(logits, jnp.asarray(batch["tokens"])))


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_packed_rows_score_each_sequence_as_alone(positions):
    model = tiny_model(positions=positions)
    params = model.init(jax.random.key(0))
    sequences, loss_masks = _sequences([5, 9, 3, 12, 7, 4], seed=0)
    unpacked = _unpacked(sequences, loss_masks)
    packed = pack_sequences(sequences, SEQ_LEN, loss_masks=loss_masks)
    assert len(packed["tokens"]) < len(sequences)  # several sequences share a row

    alone = _token_logps(model, params, unpacked)
    together = _token_logps(model, params, packed)
    # Walk the packed rows segment by segment: each segment's log-probs are its sequence's.
    index = 0
    for row, segments in zip(together, packed["segment_ids"], strict=True):
        for s in range(1, segments.max() + 1):
            where = np.flatnonzero(segments == s)
            n = len(sequences[index])
            # Position 0 of a sequence has no prediction (padding-free row: log p of token 0
            # is undefined); compare the scored positions 1..n-1.
            np.testing.assert_allclose(row[where][1:], alone[index, 1:n], rtol=1e-5, atol=1e-5)
            index += 1
    assert index == len(sequences)

    loss_fn = objectives.lm_loss_fn(model)
    grad_fn = jax.value_and_grad(lambda p, b: loss_fn(p, None, b, None), has_aux=True)
    (loss_u, metrics_u), grads_u = grad_fn(params, jax.tree.map(jnp.asarray, unpacked))
    (loss_p, metrics_p), grads_p = grad_fn(params, jax.tree.map(jnp.asarray, packed))
    assert metrics_p["tokens"] == metrics_u["tokens"] == sum(sum(m[1:]) for m in loss_masks)
    np.testing.assert_allclose(loss_p, loss_u, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-4), grads_p, grads_u
    )


def test_without_segment_masks_the_packed_loss_differs():
    """The check above can fail: drop the segment ids and packed rows attend across sequences."""
    model = tiny_model()
    params = model.init(jax.random.key(0))
    sequences, loss_masks = _sequences([5, 9, 3, 12, 7, 4], seed=0)
    packed = pack_sequences(sequences, SEQ_LEN, loss_masks=loss_masks)
    loss_fn = objectives.lm_loss_fn(model)
    with_segments = loss_fn(params, None, jax.tree.map(jnp.asarray, packed), None)[0]
    del packed["segment_ids"]
    without = loss_fn(params, None, jax.tree.map(jnp.asarray, packed), None)[0]
    assert abs(float(with_segments) - float(without)) > 1e-3


@settings(max_examples=8, deadline=None)
@given(lengths=st.lists(st.integers(2, SEQ_LEN), min_size=2, max_size=6), seed=st.integers(0, 99))
def test_packed_and_unpacked_sft_loss_agree(lengths, seed):
    model = tiny_model()
    params = model.init(jax.random.key(1))
    sequences, loss_masks = _sequences(lengths, seed)
    loss_fn = objectives.lm_loss_fn(model)
    unpacked = loss_fn(
        params, None, jax.tree.map(jnp.asarray, _unpacked(sequences, loss_masks)), None
    )
    packed = pack_sequences(sequences, SEQ_LEN, loss_masks=loss_masks)
    packed = loss_fn(params, None, jax.tree.map(jnp.asarray, packed), None)
    np.testing.assert_allclose(packed[0], unpacked[0], rtol=1e-5)


def test_packed_rows_feed_the_lm_head_only():
    model = tiny_model(heads=("lm", "value"))
    params = model.init(jax.random.key(0))
    packed = pack_sequences([[1, 5, 6], [1, 7]], 8)
    with pytest.raises(ValueError, match="LM head only"):
        model.apply(
            params,
            jnp.asarray(packed["tokens"]),
            jnp.asarray(packed["input_mask"]),
            segment_ids_BxL=jnp.asarray(packed["segment_ids"]),
        )


def test_sft_packs_the_training_rows_when_asked():
    config = sft_config.get_config("runlocal")
    from alignax.tasks import get_task

    task = get_task(config.task_name, config.task)
    with config.unlocked():
        config.sft.num_examples = 64
    train, evaluation = sft.build_data(config, task)
    with config.unlocked():
        config.sft.pack = True
    packed, evaluation_packed = sft.build_data(config, task)
    assert len(packed["tokens"]) < len(train["tokens"])  # short demonstrations share rows
    assert packed["tokens"].shape[1] == train["tokens"].shape[1]
    # The same tokens and the same scored tokens, only laid out differently.
    assert packed["input_mask"].sum() == train["input_mask"].sum()
    assert packed["loss_mask"].sum() == train["loss_mask"].sum()
    np.testing.assert_array_equal(
        np.sort(packed["tokens"][packed["input_mask"] > 0]),
        np.sort(train["tokens"][train["input_mask"] > 0]),
    )
    assert "segment_ids" not in evaluation_packed  # held-out NLL stays unpacked
    np.testing.assert_array_equal(evaluation_packed["tokens"], evaluation["tokens"])
