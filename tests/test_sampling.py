"""KV-cache sampling: cache == recompute, greedy == argmax, EOS handling, filters."""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignax import logprobs
from alignax.labels import sampled_responses
from alignax.models import positions_from_mask
from alignax.sampling import filter_logits, sample
from tests.helpers import pad_rows, tiny_model

PROMPTS = [[1, 5], [1, 7, 8, 9], [1, 11, 12]]


@functools.lru_cache
def _setup():
    model = tiny_model()
    params = model.init(jax.random.key(0))
    tokens, mask = pad_rows(PROMPTS, 4, side="left")
    return model, params, tokens, mask


def test_kv_cache_logits_equal_full_recompute_at_every_step():
    """Decoding token by token through the cache gives the logits of a full forward pass."""
    model, params, prompts, prompt_mask = _setup()
    continuation = jnp.array([[3, 4, 5, 6], [7, 8, 9, 10], [11, 12, 13, 14]])
    tokens = jnp.concatenate([prompts, continuation], axis=1)
    mask = jnp.concatenate([prompt_mask, jnp.ones_like(continuation)], axis=1)
    full = model.apply(params, tokens, mask)["logits"]
    cache = model.init_cache(3, 8)
    positions = positions_from_mask(mask)
    logits, cache = model.decode(params, prompts, positions[:, :4], mask, cache, 0)
    np.testing.assert_allclose(logits[:, -1], full[:, 3], atol=1e-5)
    for t in range(4, 8):
        logits, cache = model.decode(
            params, tokens[:, t : t + 1], positions[:, t : t + 1], mask, cache, t
        )
        np.testing.assert_allclose(logits[:, 0], full[:, t], atol=1e-5)


def test_decoding_reads_the_cache_without_copying_it():
    """The cache is laid out as the attention products read it (`CACHE_AXES`): a decode step's
    compiled program (the cache donated, as the sampler's loop carries it) neither transposes
    nor copies a layer's keys or values, or more (a copy of the whole layer at every token made
    the sampler's time grow with the cache's length)."""
    model, params, prompts, mask = _setup()
    batch, slots = 3, 32
    c = model.config
    layer_elements = batch * c.num_kv_heads * slots * c.head_dim
    step = jax.jit(
        lambda p, cache, token: model.decode(
            p, token, jnp.full((batch, 1), 5), jnp.ones((batch, slots), jnp.int32), cache, 5
        ),
        donate_argnums=1,
    )
    hlo = step.lower(params, model.init_cache(batch, slots), prompts[:, :1]).compile().as_text()
    moved = [
        line
        for line in hlo.splitlines()
        if (" transpose(" in line or " copy(" in line)
        and (shape := re.search(r"= \w+\[([\d,]+)\]", line))
        and math.prod(map(int, shape.group(1).split(","))) % layer_elements == 0
    ]
    assert not moved, moved


def test_cached_and_recomputed_sampling_draw_the_same_tokens():
    model, params, prompts, mask = _setup()
    kwargs = dict(max_new_tokens=8, eos_id=2, temperature=1.0)
    a = sample(model, params, prompts, mask, jax.random.key(3), **kwargs)
    b = sample(model, params, prompts, mask, jax.random.key(3), use_cache=False, **kwargs)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_allclose(a.logps, b.logps, atol=1e-5)


def test_temperature_zero_is_greedy_argmax_decoding():
    model, params, prompts, mask = _setup()
    out = sample(
        model,
        params,
        prompts,
        mask,
        jax.random.key(0),
        max_new_tokens=6,
        eos_id=-1,
        temperature=0.0,
    )
    tokens, m = prompts, mask
    for _ in range(6):
        logits = model.apply(params, tokens, m)["logits"][:, -1]
        tokens = jnp.concatenate([tokens, jnp.argmax(logits, -1)[:, None]], axis=1)
        m = jnp.concatenate([m, jnp.ones((3, 1), jnp.int32)], axis=1)
    np.testing.assert_array_equal(out.tokens, tokens)


def test_sampler_logps_equal_teacher_forced_logps_at_the_temperature():
    model, params, prompts, mask = _setup()
    temperature = 0.7
    out = sample(
        model,
        params,
        prompts,
        mask,
        jax.random.key(5),
        max_new_tokens=6,
        eos_id=2,
        temperature=temperature,
    )
    logits = model.apply(params, out.tokens, out.input_mask)["logits"] / temperature
    expected = logprobs.token_logps(logits, out.tokens) * out.loss_mask
    np.testing.assert_allclose(out.logps, expected, atol=1e-5)


def test_eos_stops_a_sequence_and_masks_the_rest():
    """With eos_id set to a token greedy decoding emits at step 2 of row 0, row 0 stops there:
    its later tokens are padding, its masks are 0 after EOS, and ended_with_eos is set."""
    model, params, prompts, mask = _setup()
    kwargs = dict(max_new_tokens=6, temperature=0.0)
    free = sample(model, params, prompts, mask, jax.random.key(0), eos_id=-1, **kwargs)
    eos = int(free.tokens[0, 4 + 2])
    first = int(np.argmax(np.asarray(free.tokens[0, 4:]) == eos))
    out = sample(model, params, prompts, mask, jax.random.key(0), eos_id=eos, **kwargs)
    row = np.asarray(out.tokens[0, 4:])
    np.testing.assert_array_equal(row[: first + 1], np.asarray(free.tokens[0, 4 : 4 + first + 1]))
    assert np.all(row[first + 1 :] == 0)
    np.testing.assert_array_equal(out.loss_mask[0, 4:], (np.arange(6) <= first).astype(int))
    np.testing.assert_array_equal(out.input_mask[0, 4:], out.loss_mask[0, 4:])
    assert bool(out.ended_with_eos[0])
    assert np.all(np.asarray(out.logps[0, 4 + first + 1 :]) == 0)


def test_left_padded_prompts_of_different_lengths_sample_as_if_alone():
    model, params, prompts, mask = _setup()
    batch = sample(
        model,
        params,
        prompts,
        mask,
        jax.random.key(0),
        max_new_tokens=5,
        eos_id=-1,
        temperature=0.0,
    )
    for i, prompt in enumerate(PROMPTS):
        alone_tokens, alone_mask = pad_rows([prompt], len(prompt), side="left")
        alone = sample(
            model,
            params,
            alone_tokens,
            alone_mask,
            jax.random.key(0),
            max_new_tokens=5,
            eos_id=-1,
            temperature=0.0,
        )
        np.testing.assert_array_equal(batch.tokens[i, 4:], alone.tokens[0, len(prompt) :])


def test_a_sampled_response_does_not_depend_on_the_rows_padded_beside_it():
    """`labels.sampled_responses` pads its chunks to a few fixed shapes: at temperature 1 a
    prompt's response is the same whether its chunk has 4 rows or 16 (the same key and draws
    per row), so resizing the chunks changes no sampled text."""
    model, params, prompts, mask = _setup()
    encoded = {"prompt_tokens": np.asarray(prompts), "prompt_mask": np.asarray(mask)}

    def responses(chunk_size):
        return sampled_responses(
            model,
            params,
            encoded,
            jax.random.key(3),
            eos_id=-1,
            max_new_tokens=6,
            chunk_size=chunk_size,
        )

    small, large = responses(4), responses(16)
    assert small == large and all(len(r) == 6 for r in small)
    assert len({tuple(r) for r in small}) == 3  # sampled, not one repeated row


def test_top_k_one_and_tiny_top_p_are_greedy():
    model, params, prompts, mask = _setup()
    greedy = sample(
        model,
        params,
        prompts,
        mask,
        jax.random.key(0),
        max_new_tokens=5,
        eos_id=-1,
        temperature=0.0,
    )
    for kw in (dict(top_k=1), dict(top_p=1e-6)):
        out = sample(
            model,
            params,
            prompts,
            mask,
            jax.random.key(9),
            max_new_tokens=5,
            eos_id=-1,
            temperature=1.0,
            **kw,
        )
        np.testing.assert_array_equal(out.tokens, greedy.tokens)


def test_filter_logits_by_hand():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    np.testing.assert_array_equal(
        jnp.isfinite(filter_logits(logits, top_k=2)), [[True, True, False, False]]
    )
    # Nucleus of mass 0.7: 0.5 alone is short of it, 0.5 + 0.3 reaches it.
    np.testing.assert_array_equal(
        jnp.isfinite(filter_logits(logits, top_p=0.7)), [[True, True, False, False]]
    )
    np.testing.assert_array_equal(
        jnp.isfinite(filter_logits(logits, top_p=0.85)), [[True, True, True, False]]
    )


def test_sampling_past_max_len_is_refused():
    model, params, prompts, mask = _setup()
    with pytest.raises(ValueError, match="max_len"):
        sample(model, params, prompts, mask, jax.random.key(0), max_new_tokens=40, eos_id=2)
