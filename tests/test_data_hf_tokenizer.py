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


def test_dpo_from_an_hf_checkpoint_with_its_tokenizer_on_a_chat_file(tmp_path):
    """The workflow of a user's own model and data: a checkpoint directory (a tiny random Llama
    and its tokenizer) named by `init_from` and `data.tokenizer`, a JSONL file in TRL's
    conversational format (prompt turns, one assistant turn each for chosen and rejected); the
    model's shape comes from the checkpoint (`checkpoint_shape`), not the preset."""
    import json

    import jax

    from alignax.data.sources import load_tokenizer
    from alignax.experiment import checkpoint_shape
    from alignax.models import build_model
    from alignax.models.hf import save_hf
    from alignax.sharding import init_params, make_mesh
    from alignax.workflows import preference
    from configs import dpo as dpo_config
    from tests.helpers import preset_config, short_run, tiny_config

    checkpoint = tmp_path / "checkpoint"
    _save_tokenizer(checkpoint, pad=True)
    tokenizer = load_tokenizer(checkpoint)
    assert isinstance(tokenizer, HFTokenizer) and tokenizer.vocab_size == 300
    shape = tiny_config(vocab_size=300, d_model=32, num_heads=2, num_kv_heads=1, mlp_dim=64)
    model = build_model(shape, heads=("lm",))
    records = [
        {
            "prompt": [{"role": "user", "content": f"Was movie {i} good?"}],
            "chosen": [{"role": "assistant", "content": "It was wonderful."}],
            "rejected": [{"role": "assistant", "content": "I did not like the ending."}],
        }
        for i in range(24)
    ]
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = preset_config(
        dpo_config,
        **short_run(**{"train.steps": 12, "train.batch_size": 8}),
        **{
            "init_from": str(checkpoint),
            "data.path": str(data),
            "data.tokenizer": str(checkpoint),
            "data.eval_fraction": 0.25,
        },
    )
    save_hf(checkpoint, shape, init_params(model, jax.random.key(0), make_mesh(config.mesh)))
    assert config.model.vocab_size != 300  # the preset's own shape, until the checkpoint's
    checkpoint_shape(config, overridden=set())
    assert (config.model.vocab_size, config.model.d_model, config.model.num_kv_heads) == (
        300,
        32,
        1,
    )
    summary = preference.run(config, tmp_path / "dpo")
    # One chosen and one rejected answer throughout: DPO learns to rank them.
    assert summary["steps"] == 12 and summary["eval_accuracy"] == 1.0
    assert summary["eval_margin"] > 0
    config.model.d_model = 64
    with pytest.raises(ValueError, match=r"--config.model.d_model=64 disagrees"):
        checkpoint_shape(config, overridden={"model.d_model"})


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
