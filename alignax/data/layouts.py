"""The two batch layouts every task and data file produces, built in one place.

- The LM layout (`LM_KEYS`): `tokens`, `input_mask`, `loss_mask` [N, width], each row a prompt
  followed by its response, right-padded; the loss on the response. SFT, reward models, the
  offline losses and the labelled comparisons read it.
- The prompts layout (`PROMPT_KEYS`): `prompt_tokens`, `prompt_mask` [N, width], LEFT-padded, so
  every sampled response starts at the same column.

    batch = lm_layout([([BOS, 5, 6], [7, EOS])], width=8)   # loss on 7 and EOS
    prompts = prompt_layout([[BOS, 5, 6]], width=4)          # [[0, BOS, 5, 6]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alignax.data.batching import PROMPT_KEYS

LM_KEYS = ("tokens", "input_mask", "loss_mask")

__all__ = ["LM_KEYS", "PROMPT_KEYS", "lm_layout", "prompt_layout"]


def lm_layout(
    rows: Sequence[tuple[Sequence[int], Sequence[int]]],
    width: int,
    *,
    pad_id: int = 0,
    hint: str = "",
) -> dict[str, np.ndarray]:
    """The LM layout of (prompt ids, response ids) rows (the prompt with its BOS, the response
    with its EOS if it has one), right-padded with `pad_id` to `width`. A row longer than
    `width` raises naming its index, followed by `hint`."""
    tokens = np.full((len(rows), width), pad_id, np.int32)
    input_mask = np.zeros_like(tokens)
    loss_mask = np.zeros_like(tokens)
    for i, (prompt, response) in enumerate(rows):
        length = len(prompt) + len(response)
        if length > width:
            raise ValueError(f"text {i} has {length} tokens > {width}{hint}")
        tokens[i, :length] = [*prompt, *response]
        input_mask[i, :length] = 1
        loss_mask[i, len(prompt) : length] = 1
    return {"tokens": tokens, "input_mask": input_mask, "loss_mask": loss_mask}


def prompt_layout(
    prompts: Sequence[Sequence[int]], width: int, *, pad_id: int = 0, hint: str = ""
) -> dict[str, np.ndarray]:
    """The prompts layout of token-id rows (each with its BOS), LEFT-padded with `pad_id` to
    `width`. A row longer than `width` raises naming its index, followed by `hint`."""
    tokens = np.full((len(prompts), width), pad_id, np.int32)
    mask = np.zeros_like(tokens)
    for i, row in enumerate(prompts):
        if len(row) > width:
            raise ValueError(f"prompt {i} has {len(row)} tokens > {width}{hint}")
        tokens[i, width - len(row) :] = row
        mask[i, width - len(row) :] = 1
    return {"prompt_tokens": tokens, "prompt_mask": mask}
