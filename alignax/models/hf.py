"""Hugging Face causal-LM checkpoints (config.json + safetensors) in and out.

    model_config, params = load_hf("path/to/checkpoint", mesh=mesh)   # params placed sharded
    model = build_model(model_config)
    save_hf("path/to/export", model_config, params)                    # loads in transformers

Architectures (`model_type` in config.json) and how they map onto `alignax.models.ModelConfig`:
- `llama`, `mistral`, `qwen2` (Llama family: RMSNorm, SwiGLU, rotate-half RoPE, grouped-query
  attention, tied or untied LM head). Llama's `attention_bias` maps to qkv_bias + out_bias, its
  `mlp_bias` to mlp_bias; Qwen2 always has q/k/v biases (qkv_bias=True, no output bias).
  Mistral/Qwen2 sliding-window attention equals full attention on sequences no longer than the
  window, so `max_len` is capped at the window. Not mapped (ValueError): RoPE scaling
  (`rope_type` other than "default", e.g. Llama 3.1's "llama3"), a `head_dim` other than
  hidden_size / num_attention_heads, an activation other than SiLU.
- `gpt2` (LayerNorm, GELU with the tanh approximation, learned positions, biases everywhere).
  Not mapped: `scale_attn_by_inverse_layer_idx`, `reorder_and_upcast_attn`, unscaled attention.

Export picks the architecture from the alignax config: SwiGLU + RMSNorm + RoPE writes `llama`
(or `qwen2` when only q/k/v have biases); GELU + LayerNorm + learned positions with as many heads
as kv-heads writes `gpt2` (biases the model lacks are written as zeros, which is exact).

Safetensors is read and written here directly (an 8-byte little-endian header size, a JSON header
of name -> dtype, shape, byte offsets, then the raw little-endian data), memory-mapped, so this
module needs neither torch nor the `safetensors` package. Loading assembles one stacked parameter
at a time on the host and hands each device only its shard (`jax.make_array_from_callback`, which
is `jax.device_put` per shard and also right on multi-host meshes): no full copy on one device.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import ml_dtypes
import numpy as np
from jax.sharding import Mesh

from alignax.models import Params, build_model, default_model_config
from alignax.models.config import ModelConfig
from alignax.sharding import param_shardings

LLAMA_TYPES = ("llama", "mistral", "qwen2")
GPT2_TYPES = ("gpt2",)
SUPPORTED_TYPES = LLAMA_TYPES + GPT2_TYPES

_ST_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}
_TORCH_DTYPE_NAMES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}

# ----------------------------------------------------------------------------------------------
# Safetensors files.
# ----------------------------------------------------------------------------------------------


class SafetensorsCheckpoint:
    """Lazy read access to the tensors of a checkpoint directory.

    Reads `model.safetensors.index.json` (sharded checkpoints) when present, else every
    `*.safetensors` file in the directory. Tensors are memory-mapped views; nothing is read until
    a tensor is used.
    """

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        index_path = directory / "model.safetensors.index.json"
        if index_path.exists():
            weight_map = json.loads(index_path.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in directory.glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(
                    f"{directory}: no model.safetensors.index.json and no *.safetensors file"
                )
        self._entries: dict[str, tuple[np.ndarray, dict]] = {}
        for name in files:
            path = directory / name
            header, offset, data_size = _read_safetensors_header(path)
            data = (
                np.memmap(path, dtype=np.uint8, mode="r", offset=offset)
                if data_size
                else np.zeros(0, np.uint8)  # np.memmap refuses an empty range
            )
            tensors = {key: entry for key, entry in header.items() if key != "__metadata__"}
            for key, entry in tensors.items():
                if entry["dtype"] not in _ST_DTYPES:
                    raise ValueError(
                        f"{path}: tensor {key!r} has dtype {entry['dtype']}; "
                        f"supported: {sorted(_ST_DTYPES)}"
                    )
            _check_extents(path, tensors, data_size)
            self._entries.update({key: (data, entry) for key, entry in tensors.items()})

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._entries[name][1]["shape"])

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._entries:
            raise KeyError(f"checkpoint has no tensor {name!r}")
        data, entry = self._entries[name]
        start, end = entry["data_offsets"]
        return data[start:end].view(_ST_DTYPES[entry["dtype"]]).reshape(entry["shape"])


def _read_safetensors_header(path: Path) -> tuple[dict, int, int]:
    """(header, offset and size in bytes of the data after it) of a safetensors file; a file
    too short for its header, or whose header is not JSON, raises ValueError naming it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header_size = int.from_bytes(f.read(8), "little") if size >= 8 else None
        if header_size is None or 8 + header_size > size:
            raise ValueError(
                f"{path} is truncated (or not a safetensors file): it has {size} bytes, "
                + (
                    "fewer than the 8 that give the header's size"
                    if header_size is None
                    else f"its header alone needs {8 + header_size}"
                )
                + ". Download or copy it again."
            )
        try:
            header = json.loads(f.read(header_size))
        except ValueError as e:
            raise ValueError(
                f"{path} is not a safetensors file: its header is not JSON ({e})"
            ) from e
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file: its header is not a JSON object")
    return header, 8 + header_size, size - 8 - header_size


def _check_extents(path: Path, tensors: dict[str, dict], data_size: int) -> None:
    """Refuses (ValueError naming the file and a tensor) tensors whose bytes disagree with their
    shape and dtype, or run past the end of the data (a truncated download or copy: the tensor
    named is the first one cut, in file order)."""
    for key, entry in tensors.items():
        start, end = entry["data_offsets"]
        itemsize = _ST_DTYPES[entry["dtype"]].itemsize
        needed = int(np.prod(entry["shape"], dtype=np.int64)) * itemsize
        if end - start != needed:
            raise ValueError(
                f"{path}: tensor {key!r} is damaged: shape {entry['shape']} of {entry['dtype']} "
                f"needs {needed} bytes, its offsets give {end - start}"
            )
    cut = sorted(
        (entry["data_offsets"][0], key)
        for key, entry in tensors.items()
        if entry["data_offsets"][1] > data_size
    )
    if cut:
        key = cut[0][1]
        raise ValueError(
            f"{path} is truncated: tensor {key!r} (bytes {tensors[key]['data_offsets']} of the "
            f"data) and {len(cut) - 1} after it run past the end of the file, which holds "
            f"{data_size} bytes of data. Download or copy the file again."
        )


def write_safetensors(path: str | Path, tensors: dict[str, np.ndarray]) -> int:
    """Writes one safetensors file (tensors in name order). Returns the data size in bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    arrays = {}
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        if array.dtype not in _ST_NAMES:
            raise ValueError(f"tensor {name!r} has dtype {array.dtype}, not storable")
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        header[name] = {
            "dtype": _ST_NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
        arrays[name] = array
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(header_bytes).to_bytes(8, "little"))
        f.write(header_bytes)
        for array in arrays.values():
            f.write(array.tobytes())
    return offset


# ----------------------------------------------------------------------------------------------
# Config mapping.
# ----------------------------------------------------------------------------------------------


def _rope_theta(hf: dict) -> float:
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type")
    if rope_type not in (None, "default"):
        raise ValueError(
            f"config.json: rope_type={rope_type!r} (RoPE scaling) is not supported; "
            "allowed: 'default'"
        )
    return float(params.get("rope_theta", hf.get("rope_theta", 10_000.0)))


def model_config_from_hf(
    hf: dict,
    *,
    max_len: int | None = None,
    dtype: str = "float32",
    param_dtype: str = "float32",
) -> ml_collections.ConfigDict:
    """The alignax `config.model` for a Hugging Face config.json dict (see the module docstring
    for the architectures that map). `max_len` defaults to the checkpoint's context length."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_TYPES:
        raise ValueError(
            f"config.json: model_type={model_type!r} is not supported; allowed: {SUPPORTED_TYPES}"
        )
    config = default_model_config()
    config.dtype = dtype
    config.param_dtype = param_dtype
    if model_type in LLAMA_TYPES:
        d, heads = hf["hidden_size"], hf["num_attention_heads"]
        if hf.get("head_dim") not in (None, d // heads):
            raise ValueError(
                f"config.json: head_dim={hf['head_dim']} differs from hidden_size / "
                f"num_attention_heads = {d // heads}; alignax derives head_dim from them"
            )
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"config.json: hidden_act={hf['hidden_act']!r}; allowed: 'silu'")
        context = hf.get("max_position_embeddings", 2048)
        window = hf.get("sliding_window")
        if window and (model_type == "mistral" or hf.get("use_sliding_window")):
            context = min(context, window)  # full attention == sliding window up to the window
        attention_bias = model_type == "qwen2" or bool(hf.get("attention_bias", False))
        config.update(
            vocab_size=hf["vocab_size"],
            d_model=d,
            num_layers=hf["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            mlp_dim=hf["intermediate_size"],
            mlp="swiglu",
            norm="rmsnorm",
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            positions="rope",
            rope_theta=_rope_theta(hf),
            max_len=context,
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=attention_bias,
            out_bias=model_type != "qwen2" and attention_bias,
            mlp_bias=bool(hf.get("mlp_bias", False)),
        )
    else:
        for key in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if hf.get(key):
                raise ValueError(f"config.json: {key}=true is not supported for gpt2")
        if not hf.get("scale_attn_weights", True):
            raise ValueError("config.json: scale_attn_weights=false is not supported for gpt2")
        activation = hf.get("activation_function", "gelu_new")
        if activation not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
            raise ValueError(
                f"config.json: activation_function={activation!r}; allowed: the tanh GELU "
                "('gelu_new', 'gelu_pytorch_tanh', 'gelu_fast')"
            )
        d = hf["n_embd"]
        config.update(
            vocab_size=hf["vocab_size"],
            d_model=d,
            num_layers=hf["n_layer"],
            num_heads=hf["n_head"],
            num_kv_heads=hf["n_head"],
            mlp_dim=hf.get("n_inner") or 4 * d,
            mlp="gelu",
            norm="layernorm",
            norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
            positions="learned",
            max_len=hf["n_positions"],
            tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
            qkv_bias=True,
            out_bias=True,
            mlp_bias=True,
        )
    if max_len is not None:
        if model_type in GPT2_TYPES and max_len > config.max_len:
            raise ValueError(f"max_len={max_len} exceeds gpt2's n_positions={config.max_len}")
        config.max_len = max_len
    return config


def hf_config_from_model_config(config: ModelConfig, *, dtype: str = "float32") -> dict:
    """A config.json dict for `config` (the inverse of `model_config_from_hf`)."""
    c = config
    if (c.mlp, c.norm, c.positions) == ("swiglu", "rmsnorm", "rope"):
        qwen2 = c.qkv_bias and not c.out_bias and not c.mlp_bias
        if c.qkv_bias != c.out_bias and not qwen2:
            raise ValueError(
                f"model.qkv_bias={c.qkv_bias}, model.out_bias={c.out_bias}, "
                f"model.mlp_bias={c.mlp_bias} has no Llama-family config (llama: qkv_bias == "
                "out_bias; qwen2: qkv_bias only)"
            )
        model_type = "qwen2" if qwen2 else "llama"
        hf = {
            "architectures": ["Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"],
            "model_type": model_type,
            "vocab_size": c.vocab_size,
            "hidden_size": c.d_model,
            "intermediate_size": c.mlp_dim,
            "num_hidden_layers": c.num_layers,
            "num_attention_heads": c.num_heads,
            "num_key_value_heads": c.num_kv_heads,
            "head_dim": c.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": c.max_len,
            "rms_norm_eps": c.norm_eps,
            # Both spellings: transformers >= 5 reads rope_parameters, older ones rope_theta.
            "rope_theta": c.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
            "tie_word_embeddings": c.tie_embeddings,
        }
        if not qwen2:
            hf.update(attention_bias=c.qkv_bias, mlp_bias=c.mlp_bias)
    elif (c.mlp, c.norm, c.positions) == ("gelu", "layernorm", "learned"):
        if c.num_kv_heads != c.num_heads:
            raise ValueError(
                f"gpt2 has no grouped-query attention: model.num_kv_heads={c.num_kv_heads} "
                f"must equal model.num_heads={c.num_heads}"
            )
        hf = {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": c.vocab_size,
            "n_embd": c.d_model,
            "n_layer": c.num_layers,
            "n_head": c.num_heads,
            "n_inner": c.mlp_dim,
            "n_positions": c.max_len,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": c.norm_eps,
            "tie_word_embeddings": c.tie_embeddings,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
        }
    else:
        raise ValueError(
            f"no Hugging Face architecture for model.mlp={c.mlp!r}, model.norm={c.norm!r}, "
            f"model.positions={c.positions!r}; exportable: (swiglu, rmsnorm, rope) -> llama/qwen2, "
            "(gelu, layernorm, learned) -> gpt2"
        )
    hf["torch_dtype"] = hf["dtype"] = _TORCH_DTYPE_NAMES[dtype]
    return hf


# ----------------------------------------------------------------------------------------------
# Tensor mapping: each rule ties a group of alignax leaves to a group of HF tensors.
# ----------------------------------------------------------------------------------------------


class _Rule:
    """alignax leaves `paths` <-> HF tensors `names` ('{i}' = layer index when `layered`)."""

    def __init__(
        self,
        paths: Sequence[tuple[str, ...]],
        names: Sequence[str],
        to_alignax: Callable[..., tuple[np.ndarray, ...]],
        to_hf: Callable[..., tuple[np.ndarray, ...]],
        layered: bool,
    ):
        self.paths, self.names = tuple(paths), tuple(names)
        self.to_alignax, self.to_hf, self.layered = to_alignax, to_hf, layered


def _one(fn):
    return lambda *arrays: (fn(*arrays),)


def _copy(path, name, layered=True) -> _Rule:
    """Same layout on both sides (embeddings, norms, biases)."""
    return _Rule([path], [name], _one(np.asarray), _one(np.asarray), layered)


def _linear(path, name, layered=True) -> _Rule:
    """torch.nn.Linear weight [out, in] <-> alignax [in, out]."""
    return _Rule([path], [name], _one(np.transpose), _one(np.transpose), layered)


def _reshaped(path, name, to_alignax, to_hf) -> _Rule:
    return _Rule([path], [name], _one(to_alignax), _one(to_hf), True)


def _llama_rules(c: ModelConfig) -> list[_Rule]:
    d, h, k, hd = c.d_model, c.num_heads, c.num_kv_heads, c.head_dim
    attn, mlp = "model.layers.{i}.self_attn", "model.layers.{i}.mlp"
    rules = [
        _copy(("embed",), "model.embed_tokens.weight", layered=False),
        _copy(("final_norm", "scale"), "model.norm.weight", layered=False),
        _copy(("blocks", "attn_norm", "scale"), "model.layers.{i}.input_layernorm.weight"),
        _copy(("blocks", "mlp_norm", "scale"), "model.layers.{i}.post_attention_layernorm.weight"),
        # o_proj [d, heads * head_dim] <-> out [heads, head_dim, d]
        _reshaped(
            ("blocks", "attn", "out"),
            f"{attn}.o_proj.weight",
            lambda w: w.T.reshape(h, hd, d),
            lambda x: x.reshape(h * hd, d).T,
        ),
    ]
    if not c.tie_embeddings:
        rules.append(_linear(("lm_head",), "lm_head.weight", layered=False))
    for name, heads in (("q", h), ("k", k), ("v", k)):
        # {q,k,v}_proj [heads * head_dim, d] <-> [d, heads, head_dim]
        rules.append(
            _reshaped(
                ("blocks", "attn", name),
                f"{attn}.{name}_proj.weight",
                lambda w, n=heads: w.T.reshape(d, n, hd),
                lambda x, n=heads: x.reshape(d, n * hd).T,
            )
        )
        if c.qkv_bias:
            rules.append(
                _reshaped(
                    ("blocks", "attn", f"{name}_bias"),
                    f"{attn}.{name}_proj.bias",
                    lambda b, n=heads: b.reshape(n, hd),
                    lambda x: x.reshape(-1),
                )
            )
    if c.out_bias:
        rules.append(_copy(("blocks", "attn", "out_bias"), f"{attn}.o_proj.bias"))
    for name in ("gate", "up", "down"):
        rules.append(_linear(("blocks", "mlp", name), f"{mlp}.{name}_proj.weight"))
        if c.mlp_bias:
            rules.append(_copy(("blocks", "mlp", f"{name}_bias"), f"{mlp}.{name}_proj.bias"))
    return rules


def _gpt2_rules(c: ModelConfig, prefix: str) -> list[_Rule]:
    """GPT-2's Conv1D weights are stored [in, out], like alignax's; q, k, v share c_attn."""
    d, h, hd = c.d_model, c.num_heads, c.head_dim
    p, layer = prefix, prefix + "h.{i}"

    def split_qkv_weight(w):  # [d, 3 * d] -> 3 x [d, heads, head_dim]
        return tuple(part.reshape(d, h, hd) for part in np.split(w, 3, axis=1))

    def join_qkv_weight(q, k, v):
        return (np.concatenate([x.reshape(d, h * hd) for x in (q, k, v)], axis=1),)

    rules = [
        _copy(("embed",), f"{p}wte.weight", layered=False),
        _copy(("position_embed",), f"{p}wpe.weight", layered=False),
        _copy(("final_norm", "scale"), f"{p}ln_f.weight", layered=False),
        _copy(("final_norm", "bias"), f"{p}ln_f.bias", layered=False),
        _Rule(
            [("blocks", "attn", n) for n in "qkv"],
            [f"{layer}.attn.c_attn.weight"],
            split_qkv_weight,
            join_qkv_weight,
            True,
        ),
        _reshaped(
            ("blocks", "attn", "out"),
            f"{layer}.attn.c_proj.weight",
            lambda w: w.reshape(h, hd, d),
            lambda x: x.reshape(h * hd, d),
        ),
        _copy(("blocks", "mlp", "up"), f"{layer}.mlp.c_fc.weight"),
        _copy(("blocks", "mlp", "down"), f"{layer}.mlp.c_proj.weight"),
    ]
    for path, name in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
        rules.append(_copy(("blocks", path, "scale"), f"{layer}.{name}.weight"))
        rules.append(_copy(("blocks", path, "bias"), f"{layer}.{name}.bias"))
    if c.qkv_bias:
        rules.append(
            _Rule(
                [("blocks", "attn", f"{n}_bias") for n in "qkv"],
                [f"{layer}.attn.c_attn.bias"],
                lambda b: tuple(x.reshape(h, hd) for x in np.split(b, 3)),
                lambda q, k, v: (np.concatenate([x.reshape(-1) for x in (q, k, v)]),),
                True,
            )
        )
    if c.out_bias:
        rules.append(_copy(("blocks", "attn", "out_bias"), f"{layer}.attn.c_proj.bias"))
    if c.mlp_bias:
        rules.append(_copy(("blocks", "mlp", "up_bias"), f"{layer}.mlp.c_fc.bias"))
        rules.append(_copy(("blocks", "mlp", "down_bias"), f"{layer}.mlp.c_proj.bias"))
    if not c.tie_embeddings:
        rules.append(_linear(("lm_head",), "lm_head.weight", layered=False))
    return rules


def _gpt2_zero_biases(c: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of the GPT-2 biases a bias-free alignax model lacks (exported as zeros)."""
    shapes = {}
    for i in range(c.num_layers):
        if not c.qkv_bias:
            shapes[f"transformer.h.{i}.attn.c_attn.bias"] = (3 * c.d_model,)
        if not c.out_bias:
            shapes[f"transformer.h.{i}.attn.c_proj.bias"] = (c.d_model,)
        if not c.mlp_bias:
            shapes[f"transformer.h.{i}.mlp.c_fc.bias"] = (c.mlp_dim,)
            shapes[f"transformer.h.{i}.mlp.c_proj.bias"] = (c.d_model,)
    return shapes


def _rules(config: ModelConfig, gpt2_prefix: str = "transformer.") -> list[_Rule]:
    if config.positions == "learned":
        return _gpt2_rules(config, gpt2_prefix)
    return _llama_rules(config)


def _get(tree: Params, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: Params, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


# ----------------------------------------------------------------------------------------------
# Import and export.
# ----------------------------------------------------------------------------------------------


def read_hf_config(directory: str | Path) -> dict:
    path = Path(directory) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (a Hugging Face checkpoint directory has one)")
    return json.loads(path.read_text())


def load_hf(
    directory: str | Path,
    *,
    mesh: Mesh | None = None,
    max_len: int | None = None,
    dtype: str = "float32",
    param_dtype: str = "float32",
) -> tuple[ml_collections.ConfigDict, Params]:
    """Imports a Hugging Face causal LM from local disk.

    Args:
      directory: holds config.json and model.safetensors (or model.safetensors.index.json with
        its shards).
      mesh: when given, every parameter is created directly with its `alignax.sharding` layout.
      max_len, dtype, param_dtype: alignax model config values (`max_len` defaults to the
        checkpoint's context length).

    Returns:
      (`config.model` ConfigDict, params) with `build_model(config)` giving the matching model.
    """
    hf = read_hf_config(directory)
    model_config = model_config_from_hf(hf, max_len=max_len, dtype=dtype, param_dtype=param_dtype)
    checkpoint = SafetensorsCheckpoint(directory)
    params = params_from_tensors(
        model_config,
        checkpoint,
        mesh=mesh,
        source=f"{directory} ({hf['model_type']})",
        gpt2_prefix="transformer." if "transformer.wte.weight" in checkpoint else "",
    )
    return model_config, params


def params_from_tensors(
    model_config: ml_collections.ConfigDict | ModelConfig,
    tensors,
    *,
    mesh: Mesh | None = None,
    source: str = "checkpoint",
    gpt2_prefix: str = "transformer.",
) -> Params:
    """alignax params from tensors named and laid out as in Hugging Face checkpoints.

    `tensors` maps names to arrays (`__getitem__`, `__contains__`, `keys()`), read lazily one
    at a time: a `SafetensorsCheckpoint`, or the GGUF reader's view in `alignax.models.gguf`.
    Every tensor must be used (a stray one means the config does not describe the checkpoint).
    """
    model = build_model(model_config)
    c = model.config
    shardings = param_shardings(model, mesh) if mesh is not None else None
    abstract = model.abstract_params
    params: Params = {}
    loaded = set()
    for rule in _rules(c, gpt2_prefix):
        layers = range(c.num_layers) if rule.layered else [None]
        stacked = [np.empty(_get(abstract, p).shape, _get(abstract, p).dtype) for p in rule.paths]
        for i in layers:
            names = [n.format(i=i) for n in rule.names]
            if missing := [n for n in names if n not in tensors]:
                raise ValueError(f"{source}: no tensor {missing[0]!r}, which the config implies")
            arrays = [np.asarray(tensors[n], np.float32) for n in names]
            loaded.update(names)
            for out, value, path in zip(stacked, rule.to_alignax(*arrays), rule.paths, strict=True):
                target = out if i is None else out[i]
                if value.shape != target.shape:
                    raise ValueError(
                        f"{source}: {names} give {'/'.join(path)} shape {value.shape}, "
                        f"the config implies {target.shape}"
                    )
                target[...] = value
        for path, value in zip(rule.paths, stacked, strict=True):
            sharding = None if shardings is None else _get(shardings, path)
            _set(params, path, _place(value, sharding))
    ignored = [n for n in tensors.keys() if n not in loaded and not _ignorable(n, c)]
    if ignored:
        raise ValueError(
            f"{source}: tensors the config does not use: "
            f"{ignored[:8]}{'...' if len(ignored) > 8 else ''}"
        )
    return params


def _ignorable(name: str, config: ModelConfig) -> bool:
    # Old GPT-2 checkpoints store the causal-mask buffers; tied models may still store lm_head;
    # rotary caches appear in some Llama conversions.
    return (
        bool(re.search(r"\.attn\.(masked_)?bias$", name))
        or (config.tie_embeddings and name == "lm_head.weight")
        or name.endswith("rotary_emb.inv_freq")
    )


def _dtype_name(dtype) -> str:
    return np.dtype(dtype).name


def _place(value: np.ndarray, sharding) -> jax.Array:
    if sharding is None:
        return jax.device_put(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def save_hf(
    directory: str | Path,
    model_config: ml_collections.ConfigDict | ModelConfig,
    params: Params,
    *,
    dtype: str = "float32",
    max_shard_bytes: int | None = None,
    base_config: dict | None = None,
) -> Path:
    """Exports params as a Hugging Face checkpoint that `from_pretrained` loads.

    Writes config.json and model.safetensors, or, when the tensors exceed `max_shard_bytes`,
    model-0000k-of-0000n.safetensors shards plus model.safetensors.index.json. `base_config`
    (the imported checkpoint's config.json, `read_hf_config(directory)`) is written back as it
    was, keeping its architecture (e.g. mistral) and token ids, after checking that it describes
    this model; without it the config is generated (llama, qwen2 or gpt2). Heads other than
    the LM head (reward, value) are not exported. Params must be addressable by this process.
    """
    c = (
        model_config
        if isinstance(model_config, ModelConfig)
        else ModelConfig.from_config(model_config)
    )
    np_dtype = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}[dtype]
    hf = hf_config_from_model_config(c, dtype=dtype)
    if base_config is not None:
        described = ModelConfig.from_config(
            model_config_from_hf(
                base_config,
                max_len=c.max_len,
                dtype=_dtype_name(c.dtype),
                param_dtype=_dtype_name(c.param_dtype),
            )
        )
        if described != dataclasses.replace(
            c, dropout_rate=0.0, remat=False, remat_policy="nothing"
        ):
            raise ValueError(
                f"base_config does not describe this model: {described} vs {c} "
                "(export without base_config to write a generated config.json)"
            )
        hf = {**base_config, "torch_dtype": hf["torch_dtype"], "dtype": hf["dtype"]}
    tensors: dict[str, np.ndarray] = {}
    for rule in _rules(c):
        stacked = [np.asarray(jax.device_get(_get(params, p)), np.float32) for p in rule.paths]
        for i in range(c.num_layers) if rule.layered else [None]:
            values = rule.to_hf(*(s if i is None else s[i] for s in stacked))
            for name, value in zip(rule.names, values, strict=True):
                tensors[name.format(i=i)] = np.asarray(value, np_dtype)
    if hf["model_type"] == "gpt2":
        for name, shape in _gpt2_zero_biases(c).items():
            tensors[name] = np.zeros(shape, np_dtype)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    total = sum(t.nbytes for t in tensors.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        write_safetensors(directory / "model.safetensors", tensors)
        return directory
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name in sorted(tensors):
        if shards[-1] and size + tensors[name].nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += tensors[name].nbytes
    weight_map = {}
    for k, shard in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(directory / file, shard)
        weight_map.update({name: file for name in shard})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return directory


__all__ = [
    "GPT2_TYPES",
    "LLAMA_TYPES",
    "SafetensorsCheckpoint",
    "hf_config_from_model_config",
    "load_hf",
    "model_config_from_hf",
    "params_from_tensors",
    "read_hf_config",
    "save_hf",
    "write_safetensors",
]
