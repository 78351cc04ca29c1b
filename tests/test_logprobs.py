"""Token/sequence log-probs against hand-computed values; masks."""

import jax.numpy as jnp
import numpy as np
import pytest

from alignax import logprobs


def test_token_logps_are_aligned_with_the_tokens_they_score():
    """Entry t is log softmax(logits[t-1])[tokens[t]]; entry 0 is 0."""
    logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]]))
    tokens = jnp.array([[0, 2, 1]])
    expected = np.log([[1.0, 0.25, 0.1]])
    np.testing.assert_allclose(logprobs.token_logps(logits, tokens), expected, rtol=1e-6)


def test_sequence_logps_sum_mean_and_count():
    logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6]]]))
    tokens = jnp.array([[0, 2, 2]])
    mask = jnp.array([[0, 1, 1]])
    out = logprobs.sequence_logps(logits, tokens, mask)
    np.testing.assert_allclose(out["sum"], [np.log(0.25) + np.log(0.8)], rtol=1e-6)
    np.testing.assert_allclose(out["mean"], [(np.log(0.25) + np.log(0.8)) / 2], rtol=1e-6)
    np.testing.assert_allclose(out["count"], [2.0])


def test_entropy_of_uniform_and_one_hot():
    logits = jnp.stack([jnp.zeros(4), jnp.array([0.0, -1e9, -1e9, -1e9])])[None]
    entropy = logprobs.token_entropy(logits)
    np.testing.assert_allclose(entropy, [[0.0, np.log(4)]], atol=1e-6)


def test_masked_mean_of_fully_masked_row_is_zero_not_nan():
    x = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    mask = jnp.array([[1, 1], [0, 0]])
    np.testing.assert_allclose(logprobs.masked_mean(x, mask), [1.5, 0.0])


def test_mask_through_eos_keeps_the_first_eos_and_nothing_after():
    tokens = jnp.array([[5, 2, 7, 2], [5, 6, 7, 8], [2, 3, 3, 3]])
    np.testing.assert_array_equal(
        logprobs.mask_through_eos(tokens, eos_id=2), [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    )


def test_mask_from_lengths():
    np.testing.assert_array_equal(
        logprobs.mask_from_lengths(jnp.array([0, 2, 3]), 3), [[0, 0, 0], [1, 1, 0], [1, 1, 1]]
    )


def test_scored_width_is_the_longest_scored_span_rounded_up():
    mask = np.array(
        [
            [0, 0, 1, 1, 1, 0, 0, 0],  # span 3
            [0, 0, 0, 0, 1, 1, 1, 1],  # span 4
            [0, 0, 0, 0, 0, 0, 0, 0],  # nothing scored
        ]
    )
    assert logprobs.scored_width(mask, multiple=1) == 4
    assert logprobs.scored_width(mask, multiple=3) == 6
    assert logprobs.scored_width(mask, multiple=16) == 8  # never more than the row
    assert logprobs.scored_width(np.zeros((2, 8)), multiple=4) == 4


def test_scored_window_starts_before_the_first_scored_token_and_stays_in_the_row():
    mask = jnp.array([[0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1], [1, 1, 0, 0, 0, 0]])
    positions = logprobs.scored_window(mask, 3)
    # Row 0: logits at 1, 2, 3 predict tokens 2, 3, 4. Row 1 would start at 3 and run past
    # the row: moved left to 3..5. Row 2's first token has no predictor: from position 0.
    np.testing.assert_array_equal(positions, [[1, 2, 3], [3, 4, 5], [0, 1, 2]])
    assert not logprobs.window_misses(mask, positions).any()
    # Width 1 predicts one token of each row: rows 0 and 1 lose their second; row 2's first
    # token scores 0 whatever the window (nothing predicts it), its second is predicted.
    np.testing.assert_array_equal(
        logprobs.window_misses(mask, logprobs.scored_window(mask, 1)), [True, True, False]
    )
    # Wider than the rows (data of another length): every position, in order.
    np.testing.assert_array_equal(logprobs.scored_window(mask, 7), np.tile(np.arange(6), (3, 1)))
    with pytest.raises(ValueError, match="scored width 0"):
        logprobs.scored_window(mask, 0)


def test_token_logps_at_a_window_equal_the_full_ones_on_the_tokens_it_predicts():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.standard_normal((2, 6, 5)), jnp.float32)
    tokens = jnp.asarray(rng.integers(0, 5, (2, 6)))
    positions = jnp.array([[1, 2, 3], [3, 4, 5]])
    window_logits = jnp.take_along_axis(logits, positions[..., None], axis=1)
    full = logprobs.token_logps(logits, tokens)
    windowed = logprobs.token_logps(window_logits, tokens, positions)
    predicted = np.array([[0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1]], bool)
    np.testing.assert_allclose(windowed[predicted], full[predicted], rtol=1e-6)
    assert (windowed[~predicted] == 0).all()
    entropy = logprobs.token_entropy(window_logits, positions, 6)
    np.testing.assert_allclose(entropy[predicted], logprobs.token_entropy(logits)[predicted])
