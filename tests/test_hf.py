"""Hugging Face import/export: logits equal transformers' on tiny random Llama, Qwen2, Mistral
and GPT-2 checkpoints; export reloads in transformers; params land with their sharding."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignax import sharding
from alignax.models import ModelConfig, build_model, positions_from_mask
from alignax.models.hf import (
    SafetensorsCheckpoint,
    load_hf,
    model_config_from_hf,
    read_hf_config,
    save_hf,
)
from tests.helpers import pad_rows, tiny_config, tiny_model

torch = pytest.importorskip(
    "torch", reason="test-only dependency: pip install -r requirements-test.txt"
)
transformers = pytest.importorskip(
    "transformers", reason="test-only dependency: pip install -r requirements-test.txt"
)

VOCAB = 96
TOLERANCE = 1e-4
ROWS = [[5, 17, 3, 88, 41, 9, 60], [7, 2, 33], [90, 12, 54, 1, 77]]


def _hf_model(kind):
    common = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
    )
    if kind == "llama":
        config = transformers.LlamaConfig(**common, rope_theta=500.0, tie_word_embeddings=False)
        cls = transformers.LlamaForCausalLM
    elif kind == "llama_bias":  # attention_bias and mlp_bias: every Llama bias present
        config = transformers.LlamaConfig(
            **common, attention_bias=True, mlp_bias=True, tie_word_embeddings=True
        )
        cls = transformers.LlamaForCausalLM
    elif kind == "qwen2":
        config = transformers.Qwen2Config(**common, tie_word_embeddings=True)
        cls = transformers.Qwen2ForCausalLM
    elif kind == "mistral":
        # Same alignax config as "llama" (the window exceeds the context: no cap), so the two
        # share one compiled forward.
        config = transformers.MistralConfig(**common, rope_theta=500.0, sliding_window=128)
        cls = transformers.MistralForCausalLM
    else:
        config = transformers.GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32, n_inner=48
        )
        cls = transformers.GPT2LMHeadModel
    torch.manual_seed(0)
    model = cls(config).eval()
    with torch.no_grad():  # HF initialises biases to 0 and norms to 1: randomise them all
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln_" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


def _hf_logits(model, tokens, mask):
    positions = np.asarray(positions_from_mask(jnp.asarray(mask)))
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(np.asarray(tokens), dtype=torch.long),
            attention_mask=torch.tensor(np.asarray(mask), dtype=torch.long),
            position_ids=torch.tensor(positions, dtype=torch.long),
        )
    return out.logits.float().numpy()


def _alignax_logits(model_config, params, tokens, mask):
    return np.asarray(_forward(ModelConfig.from_config(model_config))(params, tokens, mask))


@functools.cache
def _forward(model_config):
    """One compiled forward per distinct model config (compiles dominate this file's time)."""
    model = build_model(model_config)
    return jax.jit(lambda params, tokens, mask: model.apply(params, tokens, mask)["logits"])


def _random_params(model, seed):
    """Random params of the model's shapes (cheaper than model.init, which compiles)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda leaf: jnp.asarray(0.3 * rng.standard_normal(leaf.shape), leaf.dtype),
        model.abstract_params,
    )


def _max_diff_on_real_tokens(a, b, mask):
    return float(np.abs(a - b)[np.asarray(mask) > 0].max())


@pytest.fixture(scope="module", params=["llama", "llama_bias", "qwen2", "mistral", "gpt2"])
def checkpoint(request, tmp_path_factory):
    model = _hf_model(request.param)
    directory = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(directory)
    return request.param, model, directory


def _padded_batch():
    """The rows padded on the left and on the right, in one batch."""
    left, right = pad_rows(ROWS, 9, side="left"), pad_rows(ROWS, 9, side="right")
    return tuple(jnp.concatenate([a, b]) for a, b in zip(left, right, strict=True))


def test_import_logits_match_transformers(checkpoint):
    """Imported params give transformers' logits (float32, within 1e-4) on left- and
    right-padded rows."""
    kind, hf_model, directory = checkpoint
    model_config, params = load_hf(directory)
    tokens, mask = _padded_batch()
    diff = _max_diff_on_real_tokens(
        _alignax_logits(model_config, params, tokens, mask),
        _hf_logits(hf_model, tokens, mask),
        mask,
    )
    print(f"{kind} import: max |logit diff| = {diff:.2e}")
    assert diff < TOLERANCE


def test_export_reloads_in_transformers(checkpoint, tmp_path):
    """Import then export gives a checkpoint transformers loads with the original's logits."""
    kind, hf_model, directory = checkpoint
    model_config, params = load_hf(directory)
    save_hf(tmp_path, model_config, params, base_config=read_hf_config(directory))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(hf_model)
    tokens, mask = _padded_batch()
    diff = _max_diff_on_real_tokens(
        _hf_logits(reloaded, tokens, mask), _hf_logits(hf_model, tokens, mask), mask
    )
    print(f"{kind} export round trip: max |logit diff| = {diff:.2e}")
    assert diff < 1e-6


def test_sharded_index_import_equals_single_file(tmp_path):
    """A checkpoint split across files (model.safetensors.index.json) imports the same params."""
    hf_model = _hf_model("llama")
    hf_model.save_pretrained(tmp_path / "one")
    hf_model.save_pretrained(tmp_path / "many", max_shard_size="20KB")
    assert (tmp_path / "many" / "model.safetensors.index.json").exists()
    assert len(list((tmp_path / "many").glob("*.safetensors"))) > 1
    _, one = load_hf(tmp_path / "one")
    _, many = load_hf(tmp_path / "many")
    jax.tree.map(np.testing.assert_array_equal, one, many)


def test_export_sharded_round_trip(tmp_path):
    """save_hf's own sharded output (index + shards) reimports bit for bit."""
    model = tiny_model(vocab_size=VOCAB)
    params = _random_params(model, 0)
    save_hf(tmp_path, tiny_config(vocab_size=VOCAB), params, max_shard_bytes=30_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    _, reloaded = load_hf(tmp_path, max_len=model.config.max_len)
    jax.tree.map(np.testing.assert_array_equal, params, reloaded)


@pytest.mark.parametrize("kind", ["qwen2"])  # biases, GQA, tied head
def test_params_load_with_their_sharding(kind, tmp_path):
    """With a mesh, every param has alignax.sharding's layout (split, not one full copy) and
    the logits are unchanged."""
    hf_model, directory = _hf_model(kind), tmp_path
    hf_model.save_pretrained(directory)
    mesh = sharding.make_mesh(_mesh_config(), jax.devices())
    model_config, params = load_hf(directory, mesh=mesh)
    expected = sharding.param_shardings(build_model(model_config), mesh)
    for leaf, want in zip(jax.tree.leaves(params), jax.tree.leaves(expected), strict=True):
        assert leaf.sharding.is_equivalent_to(want, leaf.ndim)
    embed = params["embed"]
    assert embed.addressable_shards[0].data.size < embed.size  # split over devices
    tokens, mask = pad_rows(ROWS, 9, side="left")
    diff = _max_diff_on_real_tokens(
        _alignax_logits(model_config, params, tokens, mask),
        _hf_logits(hf_model, tokens, mask),
        mask,
    )
    assert diff < TOLERANCE


def _mesh_config():
    config = sharding.default_mesh_config()
    config.update(data=1, fsdp=4, tensor=2)
    return config


@pytest.mark.parametrize(
    "overrides",
    [
        # The "llama" checkpoint's shape (shares its compiled forward).
        dict(mlp_dim=48, max_len=64, norm_eps=1e-5, rope_theta=500.0, tie_embeddings=False),
        dict(mlp="gelu", norm="layernorm", positions="learned", num_kv_heads=4),
    ],
    ids=["llama", "gpt2_without_biases"],
)
def test_native_model_exports_to_transformers(tmp_path, overrides):
    """An alignax-initialised model exports to transformers with the same logits (GPT-2 without
    biases: zero biases are written)."""
    model = tiny_model(vocab_size=VOCAB, **overrides)
    params = _random_params(model, 1)
    save_hf(tmp_path, tiny_config(vocab_size=VOCAB, **overrides), params)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokens, mask = pad_rows(ROWS, 9, side="right")
    ours = _alignax_logits(tiny_config(vocab_size=VOCAB, **overrides), params, tokens, mask)
    diff = _max_diff_on_real_tokens(ours, _hf_logits(hf_model, tokens, mask), mask)
    assert diff < TOLERANCE


def test_bfloat16_export_reads_back(tmp_path):
    """bf16 export stores BF16 tensors that read back as the rounded float32 params."""
    model = tiny_model(vocab_size=VOCAB)
    params = _random_params(model, 2)
    save_hf(tmp_path, tiny_config(vocab_size=VOCAB), params, dtype="bfloat16")
    checkpoint = SafetensorsCheckpoint(tmp_path)
    embed = checkpoint["model.embed_tokens.weight"]
    assert embed.dtype == jnp.bfloat16
    _, reloaded = load_hf(tmp_path)
    np.testing.assert_array_equal(
        reloaded["embed"], np.asarray(params["embed"]).astype(jnp.bfloat16).astype(np.float32)
    )


@pytest.mark.parametrize(
    "change, key",
    [
        (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5}), "rope_type"),
        (dict(head_dim=16), "head_dim"),
        (dict(model_type="gemma"), "model_type"),
        (dict(hidden_act="gelu"), "hidden_act"),
    ],
)
def test_unsupported_configs_name_the_key(change, key):
    """Configs that do not map raise ValueError naming the offending config.json key."""
    hf = dict(
        model_type="llama",
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
    )
    hf.update(change)
    with pytest.raises(ValueError, match=key):
        model_config_from_hf(hf)


def test_mistral_sliding_window_caps_max_len():
    """Sliding-window attention equals full attention only up to the window: max_len is capped."""
    hf = dict(
        model_type="mistral",
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=4096,
        sliding_window=512,
    )
    assert model_config_from_hf(hf).max_len == 512
