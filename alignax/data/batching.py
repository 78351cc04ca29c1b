"""Batching: bucketed padding, LM packing, and a deterministic, resumable shuffling iterator.

    batches = BatchIterator(arrays, batch_size=32, seed=0, bucket_multiple=16)
    batch = next(batches)                    # dict of numpy arrays, last axis trimmed to a bucket
    position = batches.state()               # {"epoch": 1, "index": 32, "seed": 0}: checkpointed
    batches.restore(position)                # the same batches follow as in the original run

`arrays` is a dict of numpy arrays sharing the leading example axis (as built by
alignax.tasks / alignax.data.formats, padded to a max length). Each epoch visits the examples in
the permutation `default_rng([seed, epoch]).permutation(N)` (or in order without shuffling), so
the position (epoch, index) fully determines every later batch. Only full batches are produced
(the remainder of an epoch is dropped), so every batch has the same leading shape.

Bucketing: the sequence axis (the last axis of `tokens`, `input_mask`, `loss_mask`,
`prompt_tokens`, `prompt_mask`) is cut to the batch's longest real length rounded up to a
multiple of `bucket_multiple` or to the smallest of `buckets` that fits; one jit compile per
bucket. Right-padded keys are cut on the right, LEFT-padded prompts on the left.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SEQUENCE_KEYS = ("tokens", "input_mask", "loss_mask", "segment_ids")
PROMPT_KEYS = ("prompt_tokens", "prompt_mask")


def bucket_length(length: int, *, multiple: int | None = None, buckets: Sequence[int] = ()) -> int:
    """`length` rounded up to a multiple, or to the smallest bucket >= length."""
    if buckets:
        fitting = [b for b in sorted(buckets) if b >= length]
        if not fitting:
            raise ValueError(f"length {length} exceeds the largest bucket {max(buckets)}")
        return fitting[0]
    if multiple:
        return max(-(-length // multiple) * multiple, multiple)
    return length


def chunk_rows(rows: int, chunk_size: int) -> int:
    """The rows of each fixed-shape chunk that `rows` rows are processed in: `chunk_size`, or
    for fewer rows the power of two that holds them, so that a small call neither pads to a
    large chunk nor compiles a shape of its own for every size."""
    return min(chunk_size, 1 << max(rows - 1, 1).bit_length())


def pad_to_bucket(
    batch: dict[str, np.ndarray], *, multiple: int | None = None, buckets: Sequence[int] = ()
) -> dict[str, np.ndarray]:
    """Trims the padding of a batch to its bucket length (see module docstring)."""
    out = dict(batch)
    if "input_mask" in batch:
        mask = batch["input_mask"]
        used = np.nonzero(mask.reshape(-1, mask.shape[-1]).any(axis=0))[0]
        length = int(used[-1]) + 1 if used.size else 1
        length = min(bucket_length(length, multiple=multiple, buckets=buckets), mask.shape[-1])
        for key in SEQUENCE_KEYS:
            if key in out:
                out[key] = out[key][..., :length]
    if "prompt_mask" in batch:
        mask = batch["prompt_mask"]
        used = np.nonzero(mask.reshape(-1, mask.shape[-1]).any(axis=0))[0]
        length = mask.shape[-1] - int(used[0]) if used.size else 1
        length = min(bucket_length(length, multiple=multiple, buckets=buckets), mask.shape[-1])
        for key in PROMPT_KEYS:
            out[key] = out[key][..., mask.shape[-1] - length :]
    return out


def pack_sequences(
    sequences: Sequence[Sequence[int]],
    seq_len: int,
    loss_masks: Sequence[Sequence[int]] | None = None,
) -> dict[str, np.ndarray]:
    """Greedily packs token sequences (each starting with BOS) into rows of `seq_len` (LM only).

    Returns tokens, input_mask, loss_mask and segment_ids (1, 2, ... per sequence in a row; 0 on
    padding). `Model.apply(..., segment_ids_BxL=...)` (and `objectives.lm_loss_fn` when the
    batch holds segment_ids) lets a token attend only to earlier tokens of its own segment and
    restarts positions at 0 in every segment, so each sequence is scored as if it were alone.
    The first token of each segment is never scored (loss_mask 0), so no loss crosses segments.
    Sequences longer than seq_len raise ValueError.
    """
    rows: list[list[tuple[list[int], list[int]]]] = []
    used: list[int] = []
    for i, seq in enumerate(sequences):
        seq = list(seq)
        mask = list(loss_masks[i]) if loss_masks is not None else [0] + [1] * (len(seq) - 1)
        if len(seq) > seq_len:
            raise ValueError(f"sequence {i} has {len(seq)} tokens > seq_len={seq_len}")
        if not rows or used[-1] + len(seq) > seq_len:
            rows.append([])
            used.append(0)
        rows[-1].append((seq, mask))
        used[-1] += len(seq)
    shape = (len(rows), seq_len)
    out = {k: np.zeros(shape, np.int32) for k in SEQUENCE_KEYS}
    for r, row in enumerate(rows):
        start = 0
        for s, (seq, mask) in enumerate(row, start=1):
            end = start + len(seq)
            out["tokens"][r, start:end] = seq
            out["input_mask"][r, start:end] = 1
            out["loss_mask"][r, start:end] = mask
            out["loss_mask"][r, start] = 0
            out["segment_ids"][r, start:end] = s
            start = end
    return out


class BatchIterator:
    """Deterministic, resumable, shuffling iterator over a dict of arrays (see module docstring).

    `next()` returns a dict of numpy arrays; `state()` -> {"epoch", "index", "seed"} (JSON-able,
    saved with checkpoints); `restore(state)` continues exactly where that state was taken.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        bucket_multiple: int | None = None,
        buckets: Sequence[int] = (),
        num_epochs: int | None = None,
    ):
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"arrays have different numbers of examples: {sizes}")
        self.num_examples = next(iter(sizes.values()))
        if not 1 <= batch_size <= self.num_examples:
            raise ValueError(
                f"batch_size={batch_size} must be in [1, {self.num_examples}] (examples)"
            )
        self.arrays = arrays
        self.batch_size = batch_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.bucket_multiple = bucket_multiple
        self.buckets = tuple(buckets)
        self.num_epochs = num_epochs
        self.epoch, self.index = 0, 0
        self._order_epoch, self._order = -1, None

    @property
    def batches_per_epoch(self) -> int:
        return self.num_examples // self.batch_size

    def _permutation(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            self._order = (
                np.random.default_rng([self.seed, self.epoch]).permutation(self.num_examples)
                if self.shuffle
                else np.arange(self.num_examples)
            )
            self._order_epoch = self.epoch
        return self._order

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.index + self.batch_size > self.num_examples:
            self.epoch, self.index = self.epoch + 1, 0
        if self.num_epochs is not None and self.epoch >= self.num_epochs:
            raise StopIteration
        rows = self._permutation()[self.index : self.index + self.batch_size]
        self.index += self.batch_size
        batch = {k: v[rows] for k, v in self.arrays.items()}
        if self.bucket_multiple or self.buckets:
            batch = pad_to_bucket(batch, multiple=self.bucket_multiple, buckets=self.buckets)
        return batch

    def state(self) -> dict[str, int]:
        return {"epoch": int(self.epoch), "index": int(self.index), "seed": self.seed}

    def restore(self, state: dict) -> None:
        if not state:  # a checkpoint written without a data position: start from the beginning
            self.epoch, self.index = 0, 0
            return
        if int(state["seed"]) != self.seed:
            raise ValueError(
                f"data-iterator state has seed {state['seed']}, this iterator {self.seed}: the "
                "checkpoint was written with a different data seed"
            )
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
