"""Model and mesh presets: the shapes every experiment config and benchmark names, and the
ones `--model=<preset>` on an experiment's command line sets (alignax.cli).

  tiny        ~0.14M  2 layers, d=64       built-in task on a CPU (tests, CI, the README demo)
  small       ~10M    8 layers, d=256      CPU benchmarks, single GPU
  gpt2_small  ~124M   GPT-2 small shape    one GPU; LayerNorm/GELU/learned positions
  smollm2_135m ~135M  SmolLM2-135M shape   one GPU or a CPU with LoRA; Llama layout, GQA 9/3
  1b          ~1.1B   Llama-style GQA      GPU/TPU with FSDP, bf16 compute, remat
  llama3_8b   ~8.0B   Llama-3-8B shape     TPU slices / GPU nodes with FSDP, bf16, remat
`runlocal` is `tiny`. Parameter counts (LM head): `python -m configs.models`.
"""

import ml_collections

from alignax.models.config import default_model_config
from alignax.sharding import default_mesh_config

_PRESETS = {
    "tiny": dict(
        vocab_size=64,
        d_model=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=4,
        mlp_dim=256,
        max_len=128,
    ),
    "small": dict(
        vocab_size=8192,
        d_model=256,
        num_layers=8,
        num_heads=8,
        num_kv_heads=8,
        mlp_dim=1024,
        max_len=256,
    ),
    "gpt2_small": dict(
        vocab_size=50304,
        d_model=768,
        num_layers=12,
        num_heads=12,
        num_kv_heads=12,
        mlp_dim=3072,
        mlp="gelu",
        norm="layernorm",
        norm_eps=1e-5,
        positions="learned",
        max_len=1024,
        tie_embeddings=True,
    ),
    # SmolLM2-135M (HuggingFaceTB): the shape of the checkpoint `alignax.models.gguf` and
    # `alignax.models.hf` import; RoPE theta 100k, RMSNorm eps 1e-5, tied embeddings.
    "smollm2_135m": dict(
        vocab_size=49152,
        d_model=576,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        mlp_dim=1536,
        max_len=2048,
        rope_theta=100000.0,
        norm_eps=1e-5,
        tie_embeddings=True,
    ),
    "1b": dict(
        vocab_size=32000,
        d_model=2048,
        num_layers=16,
        num_heads=32,
        num_kv_heads=8,
        mlp_dim=8192,
        max_len=2048,
        tie_embeddings=False,
        dtype="bfloat16",
        remat=True,
    ),
    # The shape of Meta's Llama-3-8B (GQA 32/8, vocab 128,256, RoPE theta 500k, untied): what
    # `python -m benchmarks.aot` compiles for TPU slices beside `1b`.
    "llama3_8b": dict(
        vocab_size=128256,
        d_model=4096,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        mlp_dim=14336,
        max_len=8192,
        rope_theta=500000.0,
        norm_eps=1e-5,
        tie_embeddings=False,
        dtype="bfloat16",
        remat=True,
    ),
}
_MESHES = {
    # One device: the tiny model's batches are too small to split (on a CPU host with fake
    # devices, eight-way data parallelism made the toy runs 2-4x slower).
    "tiny": dict(data=1, fsdp=1, tensor=1),
    "small": dict(data=-1, fsdp=1, tensor=1),
    "gpt2_small": dict(data=1, fsdp=-1, tensor=1),
    "smollm2_135m": dict(data=1, fsdp=-1, tensor=1),
    "1b": dict(data=1, fsdp=-1, tensor=1),
    "llama3_8b": dict(data=1, fsdp=-1, tensor=1),
}
PRESETS = tuple(_PRESETS)


def model_config(preset: str) -> ml_collections.ConfigDict:
    """The model section of `preset` (one of PRESETS, or 'runlocal')."""
    if preset == "runlocal":
        preset = "tiny"
    if preset not in _PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; known: {PRESETS + ('runlocal',)}")
    config = default_model_config()
    config.update(_PRESETS[preset])
    return config


def mesh_config(preset: str) -> ml_collections.ConfigDict:
    """The mesh section that suits `preset` (one of PRESETS, or 'runlocal')."""
    config = default_mesh_config()
    config.update(_MESHES["tiny" if preset == "runlocal" else preset])
    return config
