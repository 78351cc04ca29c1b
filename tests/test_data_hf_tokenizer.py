"""HFTokenizer: the same ids, special ids and chat rendering as transformers' own tokenizer."""

import pytest

from alignax.data.hf_tokenizer import HFTokenizer
from alignax.data.tokenizer import Tokenizer

tokenizers = pytest.importorskip(
    "tokenizers", reason="test-only dependency: pip install -r requirements-test.txt"
)
transformers = pytest.importorskip(
    "transformers", reason="test-only dependency: pip install -r requirements-test.txt"
)

CHATML = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "The movie was wonderful, truly wonderful.",
    "I did not like the ending at all; 10/10 would not watch again.",
    "Naïve café reviews — with unicode!",
] * 20
TEXTS = ["the movie was not wonderful", "café 2024 <|im_end|> end", "  spaces  and\nnewlines"]
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Was the movie good?"},
]


def _save_tokenizer(directory, *, pad):
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    raw = RawTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(CORPUS, trainer)
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>" if pad else None,
    )
    hf.chat_template = CHATML
    hf.save_pretrained(directory)
    return transformers.AutoTokenizer.from_pretrained(directory)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    return _save_tokenizer(directory, pad=True), HFTokenizer.load(directory)


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
    _save_tokenizer(tmp_path, pad=False)
    tokenizer = HFTokenizer.load(tmp_path)
    assert tokenizer.pad_id == tokenizer.eos_id == tokenizer.token_to_id("</s>")


def test_missing_files_raise(tmp_path):
    """A directory without tokenizer.json raises FileNotFoundError naming the file."""
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        HFTokenizer.load(tmp_path)
