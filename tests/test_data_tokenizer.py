"""Tokenizers (word/char, sentencepiece) and chat encoding with truncation."""

import numpy as np
import pytest

from alignax.data.tokenizer import (
    SentencePieceTokenizer,
    Tokenizer,
    TooLongError,
    WordTokenizer,
    encode_chat,
    encode_chat_group,
)

VOCAB = ["<pad>", "<bos>", "<eos>"] + [f"w{i}" for i in range(20)]


@pytest.fixture(scope="module")
def words():
    return WordTokenizer(VOCAB)


def text(*ids):
    return " ".join(f"w{i}" for i in ids)


def test_word_tokenizer_round_trip_and_unknown_word(words):
    assert isinstance(words, Tokenizer)
    assert (words.pad_id, words.bos_id, words.eos_id, words.vocab_size) == (0, 1, 2, 23)
    ids = words.encode("w3 w0 w19")
    assert ids == [6, 3, 22] and words.decode(ids) == "w3 w0 w19"
    with pytest.raises(ValueError, match="'zzz'"):
        words.encode("w1 zzz")
    chars = WordTokenizer(["<pad>", "<bos>", "<eos>", *"0123456789+="], level="char")
    assert chars.decode(chars.encode("12+7=")) == "12+7="


def test_sentencepiece_train_save_load_round_trip(tmp_path):
    corpus = [
        f"the food was {a} and the service was {b} ."
        for a in ("good", "bad", "great")
        for b in ("slow", "fast", "rude", "kind")
    ] * 20
    for model_type in ("bpe", "unigram"):
        tok = SentencePieceTokenizer.train(corpus, vocab_size=40, model_type=model_type)
        assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
        sample = "the service was kind ."
        ids = tok.encode(sample)
        assert tok.decode(ids) == sample and min(ids) > 2  # encode adds no BOS/EOS
        loaded = SentencePieceTokenizer.load(tok.save(tmp_path / model_type / "tokenizer.model"))
        assert loaded.encode(sample) == ids and loaded.vocab_size == tok.vocab_size


def test_chat_layout_without_truncation(words):
    out = encode_chat(words, text(1, 2), text(3, 4, 5), max_len=16)
    np.testing.assert_array_equal(out["tokens"], [1, 4, 5, 6, 7, 8, 2])
    np.testing.assert_array_equal(out["loss_mask"], [0, 0, 0, 1, 1, 1, 1])  # response + EOS
    np.testing.assert_array_equal(out["input_mask"], np.ones(7))
    assert not out["truncated"]


def test_truncation_keeps_prompt_end_and_response_start_and_drops_eos(words):
    # BOS + 8 prompt + 8 response + EOS = 18 > 10; prompt budget max(5, 10 - 2 - 8) = 5.
    out = encode_chat(words, text(*range(8)), text(*range(10, 18)), max_len=10, max_prompt_len=5)
    assert words.decode(out["tokens"][1:6]) == text(3, 4, 5, 6, 7)  # the prompt's END
    assert words.decode(out["tokens"][6:]) == text(10, 11, 12, 13)  # the response's START
    assert len(out["tokens"]) == 10 and out["truncated"] and words.eos_id not in out["tokens"]
    np.testing.assert_array_equal(out["loss_mask"], [0] * 6 + [1] * 4)  # kept response only


def test_short_response_keeps_more_prompt(words):
    # Response of 2 fits with EOS; the prompt may use the rest (10 - 2 - 2 = 6 tokens).
    out = encode_chat(words, text(*range(8)), text(10, 11), max_len=10, max_prompt_len=3)
    assert words.decode(out["tokens"][1:7]) == text(2, 3, 4, 5, 6, 7)
    assert out["tokens"][-1] == words.eos_id and not out["truncated"]


def test_group_shares_one_truncated_prompt(words):
    chosen, rejected = encode_chat_group(
        words, text(*range(8)), [text(10), text(*range(10, 16))], max_len=10, max_prompt_len=4
    )
    np.testing.assert_array_equal(chosen["tokens"][:5], rejected["tokens"][:5])


def test_text_that_cannot_fit_raises_clear_error(words):
    with pytest.raises(TooLongError, match="max_len=6"):  # prompt budget leaves no response room
        encode_chat(words, text(*range(8)), text(10, 11), max_len=6, max_prompt_len=5)
    with pytest.raises(TooLongError, match="max_len=6"):
        encode_chat(words, text(1, 2, 3), text(4, 5, 6), max_len=6, overflow="error")
    with pytest.raises(TooLongError, match="min_response_tokens=3"):
        encode_chat(
            words, text(1, 2, 3), text(4, 5, 6), max_len=6, max_prompt_len=3, min_response_tokens=3
        )
    with pytest.raises(ValueError, match="overflow"):
        encode_chat(words, "w1", "w2", max_len=6, overflow="chop")
