"""The model's static configuration: a frozen, validated view of the `config.model` ConfigDict."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import ml_collections

from alignax.schema import check_choice, check_keys

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
_CHOICES = {
    "mlp": ("gelu", "swiglu"),
    "norm": ("layernorm", "rmsnorm"),
    "positions": ("learned", "rope"),
    "dtype": tuple(_DTYPES),
    "param_dtype": tuple(_DTYPES),
    "remat_policy": ("nothing", "dots", "dots_no_batch"),
}


def default_model_config() -> ml_collections.ConfigDict:
    """Every key `ModelConfig` reads, with its default (the `tiny` preset's shape)."""
    return ml_collections.ConfigDict(
        {
            "vocab_size": 64,
            "d_model": 64,
            "num_layers": 2,
            "num_heads": 4,
            "num_kv_heads": 4,
            "mlp_dim": 256,
            "mlp": "swiglu",
            "norm": "rmsnorm",
            "norm_eps": 1e-6,
            "positions": "rope",
            "rope_theta": 10_000.0,
            "max_len": 64,
            "tie_embeddings": True,
            "dtype": "float32",
            "param_dtype": "float32",
            "dropout_rate": 0.0,
            # Recompute each layer in the backward pass instead of keeping its activations;
            # `remat_policy` names what a layer still saves: "nothing" (least memory), "dots"
            # (every matmul output), "dots_no_batch" (the weight matmuls', not attention's).
            "remat": False,
            "remat_policy": "nothing",
            # Biases for imported checkpoints (Qwen2: qkv_bias; GPT-2: all three).
            "qkv_bias": False,
            "out_bias": False,
            "mlp_bias": False,
        }
    )


def at_width(model: ml_collections.ConfigDict, width: int) -> ml_collections.ConfigDict:
    """`model` at d_model = `width`, keeping its head dimension, its ratio of query to key/value
    heads and its MLP ratio: one family of models over sizes (a study's size axis)."""
    head_dim = model.d_model // model.num_heads
    if width % head_dim:
        raise ValueError(
            f"width {width} is not a multiple of the head dimension {head_dim} of config.model"
        )
    heads = width // head_dim
    out = model.copy_and_resolve_references()
    out.update(
        d_model=width,
        num_heads=heads,
        num_kv_heads=max(1, heads // (model.num_heads // model.num_kv_heads)),
        mlp_dim=model.mlp_dim * width // model.d_model,
    )
    return out


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    mlp_dim: int
    mlp: str
    norm: str
    norm_eps: float
    positions: str
    rope_theta: float
    max_len: int
    tie_embeddings: bool
    dtype: jnp.dtype
    param_dtype: jnp.dtype
    dropout_rate: float
    remat: bool
    remat_policy: str
    qkv_bias: bool
    out_bias: bool
    mlp_bias: bool

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, prefix: str = "model"):
        """Validates `config` (the `model` section) and freezes it; errors name the bad key."""
        check_keys(cls, config, prefix)
        values = dict(config.items())
        for key, allowed in _CHOICES.items():
            check_choice(prefix, key, values[key], allowed)
        for key in (
            "vocab_size",
            "d_model",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "mlp_dim",
            "max_len",
        ):
            if not isinstance(values[key], int) or values[key] < 1:
                raise ValueError(f"{prefix}.{key} must be a positive integer, got {values[key]!r}")
        if values["d_model"] % values["num_heads"]:
            raise ValueError(
                f"{prefix}.num_heads={values['num_heads']} must divide "
                f"{prefix}.d_model={values['d_model']}"
            )
        if values["num_heads"] % values["num_kv_heads"]:
            raise ValueError(
                f"{prefix}.num_kv_heads={values['num_kv_heads']} must divide "
                f"{prefix}.num_heads={values['num_heads']}"
            )
        if values["positions"] == "rope" and (values["d_model"] // values["num_heads"]) % 2:
            raise ValueError(
                f"{prefix}.positions='rope' needs an even head dimension "
                f"({prefix}.d_model / {prefix}.num_heads), got "
                f"{values['d_model'] // values['num_heads']}"
            )
        if not 0.0 <= values["dropout_rate"] < 1.0:
            raise ValueError(
                f"{prefix}.dropout_rate must be in [0, 1), got {values['dropout_rate']}"
            )
        values["dtype"] = _DTYPES[values["dtype"]]
        values["param_dtype"] = _DTYPES[values["param_dtype"]]
        return cls(**values)

    def num_params(self, heads=("lm",)) -> int:
        """Parameter count of the model with these heads (embeddings included)."""
        d, h, k, hd, f = (
            self.d_model,
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            self.mlp_dim,
        )
        norm = d * (2 if self.norm == "layernorm" else 1)
        mlp = d * f * (3 if self.mlp == "swiglu" else 2)
        block = d * h * hd * 2 + d * k * hd * 2 + mlp + 2 * norm
        total = self.vocab_size * d + self.num_layers * block + norm
        if self.positions == "learned":
            total += self.max_len * d
        if "lm" in heads and not self.tie_embeddings:
            total += d * self.vocab_size
        if self.qkv_bias:
            total += self.num_layers * (h + 2 * k) * hd
        if self.out_bias:
            total += self.num_layers * d
        if self.mlp_bias:
            total += self.num_layers * (f * (2 if self.mlp == "swiglu" else 1) + d)
        total += (d + 1) * (("reward" in heads) + ("value" in heads))
        return total
