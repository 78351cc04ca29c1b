"""The synthetic review task: generator, exact likelihood, gold reward, annotators, datasets."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignax.tasks import Annotator, get_task, review_config
from alignax.tasks.review import (
    DETERMINERS,
    EOS_ID,
    TOPICS,
    WORD_TO_ID,
    WORDS,
    gold_reward_reference,
)


@pytest.fixture(scope="module")
def task():
    return get_task("review")


def terms_of(task, prompt: str, response: str) -> dict:
    p, r = task.encode_text(prompt), task.encode_text(response)
    batch = task.encode([p], [r], seq_len=1 + len(p) + len(r))
    return {
        k: float(v[0])
        for k, v in task.gold_reward_terms_np(batch["tokens"], batch["loss_mask"]).items()
    }


@pytest.mark.parametrize(
    "response, expected",
    [
        # Rule: "not" negates and "very" doubles the pending multiplier; a polarity word adds
        # +-multiplier and resets it; "." resets it.
        ("it is good . <eos>", 1.0),
        ("it is very good . <eos>", 2.0),  # very: 2 * (+1)
        ("it is not bad . <eos>", 1.0),  # not: -1 * (-1)
        ("it is not very good . <eos>", -2.0),  # -1 * 2 * (+1)
        ("it is very not bad . <eos>", 2.0),  # 2 * -1 * (-1)
        ("it is very very good . <eos>", 4.0),
        ("it is not . good <eos>", 1.0),  # the negation does not cross "."
        ("it is good and bad . <eos>", 0.0),
        ("it is not the food good . <eos>", -1.0),  # negation waits for the next polarity word
    ],
)
def test_sentiment_matches_hand_derived_compositional_rule(task, response, expected):
    assert terms_of(task, "food", response)["sentiment"] == expected


def test_repetition_is_fraction_of_bigrams_seen_before(task):
    # Bigrams: the-food food-was was-good good-. .-the the-food* food-was* was-good* good-.*
    # -> 4 repeated of 9 (the EOS is not part of any bigram).
    terms = terms_of(task, "food", "the food was good . the food was good . <eos>")
    assert terms["repetition"] == pytest.approx(4 / 9)
    assert terms_of(task, "food", "the food was good . <eos>")["repetition"] == 0.0


def test_no_eos_term_and_total_formula(task):
    """raw = 3 tanh(S/3) - w_rep * rep + w_flu * (flu - base) - w_eos * no_eos; gold z-scores it."""
    c = task.config
    with_eos = terms_of(task, "food", "it is very good . <eos>")
    without = terms_of(task, "food", "it is very good .")
    assert with_eos["no_eos"] == 0.0 and without["no_eos"] == 1.0
    for t in (with_eos, without):
        raw = (
            c.sentiment_weight * 3 * math.tanh(t["sentiment"] / 3)
            - c.repetition_weight * t["repetition"]
            + c.fluency_weight * (t["fluency"] - task.base_fluency)
            - c.no_eos_penalty * t["no_eos"]
        )
        assert t["raw"] == pytest.approx(raw, abs=1e-5)
        assert t["gold"] == pytest.approx((raw - task.base_raw_mean) / task.base_raw_std, abs=1e-5)


def test_jitted_gold_equals_pure_python_reference(task):
    """Generator samples and arbitrary token soup (what a policy may emit) score the same."""
    prompts, responses = task.sample_texts(12, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(6):  # random ids, including pad/bos/eos inside the response
        prompts.append(task.sample_prompts(1, rng)[0])
        responses.append(rng.integers(0, task.vocab_size, size=rng.integers(1, 30)).tolist())
    batch = task.encode(prompts, responses)
    got = jax.jit(task.gold_reward_terms)(batch["tokens"], batch["loss_mask"])
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ref = gold_reward_reference(task, [WORDS[j] for j in p], [WORDS[j] for j in r])
        for key, value in ref.items():
            assert float(got[key][i]) == pytest.approx(value, rel=1e-4, abs=1e-4), (key, i)


def test_gold_is_invariant_to_padding_side_and_amount(task):
    prompts, responses = task.sample_texts(4, seed=5)
    right = task.encode(prompts, responses)
    L = right["tokens"].shape[1]
    left_tokens = np.zeros((4, L + 7), np.int32)
    left_mask = np.zeros((4, L + 7), np.int32)
    for i in range(4):
        n = int(right["input_mask"][i].sum())
        left_tokens[i, -n:] = right["tokens"][i, :n]
        left_mask[i, -n:] = right["loss_mask"][i, :n]
    np.testing.assert_allclose(
        task.gold_reward_np(left_tokens, left_mask),
        task.gold_reward_np(right["tokens"], right["loss_mask"]),
        atol=1e-6,
    )


def test_gold_vmaps_over_a_leading_axis(task):
    prompts, responses = task.sample_texts(6, seed=6)
    b = task.encode(prompts, responses)
    tokens, mask = b["tokens"].reshape(2, 3, -1), b["loss_mask"].reshape(2, 3, -1)
    vmapped = jax.jit(jax.vmap(task.gold_reward))(tokens, mask)
    np.testing.assert_allclose(
        vmapped.reshape(-1), task.gold_reward_np(b["tokens"], b["loss_mask"]), atol=1e-6
    )


def test_base_samples_gold_is_standardised(task):
    prompts, responses = task.sample_texts(2048, seed=123)
    b = task.encode(prompts, responses)
    gold = task.gold_reward_np(b["tokens"], b["loss_mask"])
    assert abs(gold.mean()) < 0.1 and abs(gold.std() - 1) < 0.1


def test_next_token_distribution_is_normalised_and_matches_sampling(task):
    prompt = [WORD_TO_ID["the"], WORD_TO_ID["food"]]
    probs = task.next_token_probs(prompt, [])
    assert probs.sum() == pytest.approx(1.0) and probs[0] == probs[1] == 0.0
    n = 4000
    responses = task.sample_responses([prompt] * n, seed=9)
    freq = np.bincount([r[0] for r in responses], minlength=task.vocab_size) / n
    assert np.max(np.abs(freq - probs)) < 4 * math.sqrt(0.25 / n)  # 4 sigma, worst case p=1/2
    # log_likelihood is the sum of the log next-token probabilities along the text.
    r = responses[0]
    expected = sum(math.log(task.next_token_probs(prompt, r[:t])[r[t]]) for t in range(len(r)))
    assert task.log_likelihood(prompt, r) == pytest.approx(expected)


def test_prompt_likelihood_sums_to_one_over_all_prompts(task):
    topics = [WORD_TO_ID[w] for w in TOPICS]
    dets = [WORD_TO_ID[w] for w in DETERMINERS]
    and_id = WORD_TO_ID["and"]
    prompts = [[t] for t in topics] + [[d, t] for d in dets for t in topics]
    prompts += [[a, and_id, b] for a, b in itertools.permutations(topics, 2)]
    prompts += [[d, a, and_id, b] for d in dets for a, b in itertools.permutations(topics, 2)]
    total = sum(math.exp(task.prompt_log_likelihood(p)) for p in prompts)
    assert total == pytest.approx(1.0)
    assert task.prompt_log_likelihood([and_id]) == -math.inf


def test_responses_have_the_documented_lengths(task):
    _, responses = task.sample_texts(1000, seed=11)
    lengths = np.array([len(r) for r in responses])
    assert lengths.min() >= task.config.min_response_words  # EOS below that has prob ~1e-5
    assert 16 <= np.median(lengths) <= 24
    assert np.mean([r[-1] == EOS_ID for r in responses]) > 0.97


def test_same_seed_same_language_and_samples_other_seed_differs(task):
    again = get_task("review")  # cached
    assert task.sample_texts(5, seed=1) == again.sample_texts(5, seed=1)
    config = review_config()
    config.seed = 1
    other = get_task("review", config)
    assert not np.allclose(other.transition_logps[3:, 3:], task.transition_logps[3:, 3:])
    fresh = type(task)(review_config())  # built from scratch: identical statistics
    assert fresh.base_raw_mean == task.base_raw_mean and fresh.base_fluency == task.base_fluency


def test_hard_annotator_flip_rate_is_within_binomial_tolerance():
    n, rate = 8000, 0.25
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=n), rng.normal(size=n)
    labels = Annotator("hard", flip_rate=rate).prefer_first(a, b, rng)
    disagreement = np.mean(labels != (a >= b))
    assert abs(disagreement - rate) < 4 * math.sqrt(rate * (1 - rate) / n)


def test_bradley_terry_annotator_matches_sigmoid_probability():
    n, temperature = 8000, 0.5
    rng = np.random.default_rng(1)
    labels = Annotator("bradley_terry", temperature=temperature).prefer_first(
        np.full(n, 0.3), np.zeros(n), rng
    )
    p = 1 / (1 + math.exp(-0.3 / temperature))
    assert abs(labels.mean() - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_plackett_luce_top_choice_probability_and_hard_sort():
    n = 8000
    rewards = np.tile([1.0, 0.0, -1.0], (n, 1))
    ranks = Annotator("bradley_terry", temperature=1.0).rank(rewards, np.random.default_rng(2))
    p_first = math.e / (math.e + 1 + 1 / math.e)
    assert abs(np.mean(ranks[:, 0] == 0) - p_first) < 4 * math.sqrt(p_first * (1 - p_first) / n)
    assert (np.sort(ranks, axis=1) == np.arange(3)).all()  # every row is a permutation
    hard = Annotator("hard").rank(np.array([[0.1, 2.0, -1.0]]), None)
    np.testing.assert_array_equal(hard, [[1, 0, 2]])


def test_comparison_dataset_layout_and_hard_labels_follow_gold(task):
    data = task.comparison_dataset(32, seed=0, annotator=Annotator("hard"))
    assert data["tokens"].shape == (32, 2, task.seq_len) and data["tokens"].dtype == np.int32
    np.testing.assert_array_equal(data["ranks"], np.tile([0, 1], (32, 1)))
    assert (data["gold_reward"][:, 0] >= data["gold_reward"][:, 1]).all()
    # The loss mask covers the response and EOS only, never BOS/prompt/padding.
    assert (data["loss_mask"] <= data["input_mask"]).all() and (
        data["loss_mask"][..., :2] == 0
    ).all()
    regold = task.gold_reward_np(data["tokens"].reshape(64, -1), data["loss_mask"].reshape(64, -1))
    np.testing.assert_allclose(regold.reshape(32, 2), data["gold_reward"], atol=1e-5)
    ranked = task.comparison_dataset(8, seed=0, annotator=Annotator("hard"), num_responses=4)
    assert ranked["tokens"].shape == (8, 4, task.seq_len)
    assert (np.diff(ranked["gold_reward"], axis=1) <= 0).all()  # best first


def test_a_length_biased_annotator_judges_gold_plus_its_bias_per_token(task):
    """The chosen response is the one of higher gold + length_bias * tokens; gold_reward stays
    gold; no bias labels exactly as the plain annotator; labels.comparisons' label_probability
    is the biased annotator's."""
    from alignax import labels

    def lengths(data):
        return data["loss_mask"].sum(-1)

    plain = task.comparison_dataset(64, seed=1, annotator=Annotator("hard"))
    none = task.comparison_dataset(64, seed=1, annotator=Annotator("hard", length_bias=0.0))
    for key in plain:
        np.testing.assert_array_equal(plain[key], none[key])
    long = task.comparison_dataset(64, seed=1, annotator=Annotator("hard", length_bias=100.0))
    length = lengths(long)
    assert (length[:, 0] >= length[:, 1]).all() and (length[:, 0] > length[:, 1]).any()
    biased = task.comparison_dataset(64, seed=1, annotator=Annotator("hard", length_bias=0.25))
    utility = biased["gold_reward"] + 0.25 * lengths(biased)
    assert (utility[:, 0] >= utility[:, 1] - 1e-5).all()
    assert (biased["gold_reward"][:, 0] < biased["gold_reward"][:, 1]).any()  # length won some
    config = labels.default_labels_config(source="generator", length_bias=0.25)
    pairs = labels.comparisons(config, task, None, 64, seed=2, split="train")
    utility = pairs["gold_reward"] + 0.25 * lengths(pairs)
    want = 1 / (1 + np.exp(-(utility[:, 0] - utility[:, 1]) / config.annotator_temperature))
    np.testing.assert_allclose(pairs["label_probability"], want, rtol=1e-5)
    rng = np.random.default_rng(0)
    prefers = labels.annotator_prefers_first(config.copy_and_resolve_references(), pairs, rng)
    assert prefers.mean() > 0.5  # the chosen response is first, and the annotator agrees


def test_sft_demonstrations_are_best_of_n(task):
    data = task.sft_dataset(64, seed=0, num_candidates=8, keep=1)
    assert data["tokens"].shape == (64, task.seq_len)
    # The best of 8 standard-ish normals has mean ~1.4; the base mean is ~0.
    assert data["gold_reward"].mean() > 1.0


def test_prompt_dataset_is_left_padded_with_bos_first(task):
    data = task.prompt_dataset(16, seed=0, split="eval")
    tokens, mask = data["prompt_tokens"], data["prompt_mask"]
    assert tokens.shape == (16, 5) and (mask[:, -1] == 1).all()
    first = np.argmax(mask, axis=1)
    assert (tokens[np.arange(16), first] == 1).all() and (tokens[mask == 0] == 0).all()


def test_pretraining_dataset_scores_every_token_after_bos(task):
    data = task.pretraining_dataset(8, seed=0)
    np.testing.assert_array_equal(data["loss_mask"][:, 1:], data["input_mask"][:, 1:])
    assert (data["loss_mask"][:, 0] == 0).all()


def test_unknown_task_name_lists_allowed_values():
    with pytest.raises(ValueError, match="arithmetic"):
        get_task("nope")


def test_gold_is_jittable_inside_a_larger_function(task):
    """PPO-style use: scoring inside jit with a response mask computed on device."""
    prompts, responses = task.sample_texts(3, seed=2)
    b = task.encode(prompts, responses)

    @jax.jit
    def score(tokens, input_mask, prompt_len):
        response_mask = input_mask * (jnp.arange(tokens.shape[1]) >= prompt_len[:, None])
        return task.gold_reward(tokens, response_mask)

    prompt_len = jnp.array([1 + len(p) for p in prompts])
    np.testing.assert_allclose(
        score(b["tokens"], b["input_mask"], prompt_len),
        task.gold_reward_np(b["tokens"], b["loss_mask"]),
        atol=1e-6,
    )


def test_train_and_eval_prompts_are_disjoint_by_construction(task):
    """Every dataset trained on draws training prompts; evaluation prompts are never among
    them, whatever the seeds."""

    def prompts_of(batch):
        rows = batch["tokens"].reshape(-1, batch["tokens"].shape[-1])
        masks = batch["loss_mask"].reshape(rows.shape)
        return {tuple(row[1 : int(np.argmax(m))]) for row, m in zip(rows, masks)}

    train = set()
    train |= prompts_of(task.sft_dataset(300, seed=1, num_candidates=2))
    train |= prompts_of(task.comparison_dataset(300, seed=2, annotator=Annotator("hard")))
    pre = task.pretraining_dataset(300, seed=3)
    train |= {tuple(p) for p in task.sample_texts(300, seed=3)[0]}
    assert pre["tokens"].shape[0] == 300
    evaluation = task.prompt_dataset(600, seed=1, split="eval")
    held_out = {
        tuple(int(t) for t, m in zip(row, mask) if m)[1:]
        for row, mask in zip(evaluation["prompt_tokens"], evaluation["prompt_mask"])
    }
    assert len(train) > 100 and len(held_out) > 50
    assert not train & held_out
    assert all(task.prompt_split(list(p)) == "eval" for p in held_out)
    assert all(task.prompt_split(list(p)) == "train" for p in train)
