"""Token/sequence log-probs against hand-computed values; masks."""

import jax.numpy as jnp
import numpy as np

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
