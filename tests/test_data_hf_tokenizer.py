"""HFTokenizer: the same ids, special ids and chat rendering as transformers' own tokenizer."""

import pytest

from alignax.data.hf_tokenizer import HFTokenizer
from alignax.data.tokenizer import Tokenizer
from tests.helpers import save_chat_tokenizer

tokenizers = pytest.importorskip(
    "tokenizers", reason="test-only dependency: pip install -r requirements-test.txt"
)
transformers = pytest.importorskip(
    "transformers", reason="test-only dependency: pip install -r requirements-test.txt"
)

TEXTS = ["the movie was not wonderful", "café 2024 <|im_end|> end", "  spaces  and\nnewlines"]
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Was the movie good?"},
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    return save_chat_tokenizer(directory, pad=True), HFTokenizer.load(directory)


def test_ids_and_special_tokens_match_transformers(saved):
    """encode (no special tokens added), decode and the special ids equal transformers'."""
    reference, ours = saved
    assert isinstance(ours, Tokenizer)
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == reference.encode(text, add_special_tokens=False)
        assert ours.decode(ids, skip_special_tokens=False) == reference.decode(ids)
    assert (ours.pad_id, ours.bos_id, ours.eos_id) == (
        reference.pad_token_id,
        reference.bos_token_id,
        reference.eos_token_id,
    )
    assert ours.vocab_size == len(reference)


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_matches_transformers(saved, add_generation_prompt):
    """The rendered chat and its ids equal transformers' apply_chat_template."""
    reference, ours = saved
    text = ours.apply_chat_template(MESSAGES, add_generation_prompt=add_generation_prompt)
    assert text == reference.apply_chat_template(
        MESSAGES, add_generation_prompt=add_generation_prompt, tokenize=False
    )
    assert text.startswith("<s><|im_start|>system\nBe brief.<|im_end|>\n")
    expected_ids = reference.apply_chat_template(
        MESSAGES, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
    )
    assert ours.encode_chat(MESSAGES, add_generation_prompt=add_generation_prompt) == list(
        expected_ids
    )


def test_missing_pad_token_pads_with_eos(tmp_path):
    """A checkpoint without a pad token (Llama, GPT-2) pads with its EOS id."""
    save_chat_tokenizer(tmp_path, pad=False)
    tokenizer = HFTokenizer.load(tmp_path)
    assert tokenizer.pad_id == tokenizer.eos_id == tokenizer.token_to_id("</s>")


def test_missing_files_raise(tmp_path):
    """A directory without tokenizer.json raises FileNotFoundError naming the file."""
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        HFTokenizer.load(tmp_path)


def test_chat_turns_are_written_with_the_checkpoints_template(saved, tmp_path):
    """A conversational record encoded with a checkpoint's tokenizer: BOS + the template's
    prompt (generation prompt included) + its writing of the reply + EOS, which is transformers'
    own `apply_chat_template(..., tokenize=True)` of the whole chat followed by EOS; the loss
    covers the reply as the template writes it (end-of-turn marks included)."""
    import json

    import numpy as np

    from alignax.data.formats import load_dataset

    reference, tokenizer = saved
    prompt = MESSAGES
    reply = {"role": "assistant", "content": "Yes, truly wonderful."}
    record = {"prompt": prompt, "chosen": [reply], "rejected": [{**reply, "content": "No."}]}
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(record) + "\n")
    batch, _ = load_dataset(path, tokenizer, max_len=96)
    mask = batch["input_mask"][0, 0] > 0
    tokens = batch["tokens"][0, 0][mask].tolist()
    whole = list(reference.apply_chat_template([*prompt, reply], return_dict=False))
    assert tokens == [*whole, tokenizer.eos_id]
    prompt_ids = reference.apply_chat_template(
        prompt, add_generation_prompt=True, return_dict=False
    )
    loss = batch["loss_mask"][0, 0][mask]
    np.testing.assert_array_equal(
        loss, [0] * len(prompt_ids) + [1] * (len(tokens) - len(prompt_ids))
    )
