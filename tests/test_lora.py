"""LoRA: zero-initialised B gives the base exactly; merged weights equal the unmerged low-rank
update; a LoRA train step changes only the adapters; adapters follow the base's sharding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alignax import sharding
from alignax.models import build_model
from alignax.models.lora import (
    TARGETS,
    LoraConfig,
    init_lora,
    lora_loss_fn,
    lora_shardings,
    merge,
    num_lora_params,
)
from alignax.objectives import lm_loss_fn
from alignax.state import TrainState
from alignax.steps import make_train_step
from tests.helpers import pad_rows, tiny_config

ALL = LoraConfig(rank=4, alpha=8.0, targets=tuple(TARGETS))


def _random_params(model, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda leaf: jnp.asarray(0.3 * rng.standard_normal(leaf.shape), leaf.dtype),
        model.abstract_params,
    )


@pytest.fixture(scope="module")
def setup():
    model = build_model(tiny_config())
    base = _random_params(model, 0)
    tokens, mask = pad_rows([[1, 5, 9, 4, 7, 2], [1, 3, 3, 8, 2]], 8, side="right")
    batch = {"tokens": tokens, "input_mask": mask, "loss_mask": mask}
    adapters = init_lora(jax.random.key(0), model, ALL)  # compiled once (random ops are slow to
    return model, base, batch, adapters  # compile on CPU)


def _logits(model, params, batch):
    return np.asarray(_forward(model)(params, batch["tokens"], batch["input_mask"]))


@functools.cache
def _forward(model):
    return jax.jit(lambda params, tokens, mask: model.apply(params, tokens, mask)["logits"])


def test_zero_b_gives_exactly_the_base(setup):
    """Fresh adapters (B = 0) leave every output bit-identical to the base model's."""
    model, base, batch, adapters = setup
    assert all(float(jnp.abs(a["b"]).max()) == 0 for a in adapters.values())
    assert all(float(jnp.abs(a["a"]).max()) > 0 for a in adapters.values())
    np.testing.assert_array_equal(
        _logits(model, merge(base, adapters, ALL), batch), _logits(model, base, batch)
    )


def test_merged_weights_equal_the_unmerged_update(setup):
    """For every target, x @ merged W == x @ W + (alpha/rank) (x @ A) @ B, contracting the
    target's input dims (q/k/v: d; out: heads x head_dim)."""
    model, base, _, fresh = setup
    rng = np.random.default_rng(1)
    adapters = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), x.dtype), fresh)
    merged = merge(base, adapters, ALL)
    for target, (path, num_in) in TARGETS.items():
        weight, new_weight = base, merged
        for key in path:
            weight, new_weight = weight[key], new_weight[key]
        a, b = adapters[target]["a"], adapters[target]["b"]
        layers, in_shape = weight.shape[0], weight.shape[1 : 1 + num_in]
        x = jnp.asarray(rng.standard_normal((layers, 3, *in_shape)), jnp.float32)
        contract = "".join("ijk"[:num_in])

        def apply(w, x=x, contract=contract):
            return jnp.einsum(f"ln{contract},l{contract}...->ln...", x, w)

        low_rank = jnp.einsum(f"ln{contract},l{contract}r->lnr", x, a)
        expected = apply(weight) + ALL.scale * jnp.einsum("lnr,lr...->ln...", low_rank, b)
        np.testing.assert_allclose(apply(new_weight), expected, rtol=1e-5, atol=1e-4)
    # Untargeted weights are the base's own arrays (shared, not copied).
    assert merged["embed"] is base["embed"]


def test_lora_step_changes_only_the_adapters(setup):
    """Training the adapters leaves the frozen base (ref_params) bit-identical, keeps an
    adapter-sized optimizer state, moves the adapters and lowers the loss."""
    model, base, batch, all_adapters = setup
    lora = LoraConfig(rank=ALL.rank, alpha=ALL.alpha, targets=("q", "v", "down"))
    adapters = {t: all_adapters[t] for t in lora.targets}
    mesh = sharding.make_mesh(sharding.default_mesh_config(), jax.devices()[:1])
    tx = optax.adam(3e-2)
    state = TrainState.create(adapters, tx, mesh, ref_params=base)
    opt_size = sum(x.size for x in jax.tree.leaves(state.opt_state))
    assert opt_size == 2 * num_lora_params(adapters) + 1  # mu, nu and the step count
    step = jax.jit(make_train_step(lora_loss_fn(lm_loss_fn(model), lora), tx))
    base_before = jax.tree.map(np.asarray, base)
    adapters_before = jax.tree.map(np.asarray, adapters)
    losses = []
    for _ in range(3):
        state, metrics = step(state, batch, jax.random.key(1))
        losses.append(float(metrics["loss"] if "loss" in metrics else metrics["nll"]))
    jax.tree.map(np.testing.assert_array_equal, base_before, state.ref_params)
    for target in lora.targets:
        for name in ("a", "b"):
            assert not np.array_equal(adapters_before[target][name], state.params[target][name])
    assert losses[-1] < losses[0]


def test_adapters_follow_the_base_sharding():
    """A takes the base weight's input-axis sharding, B its output-axis sharding."""
    model = build_model(tiny_config(num_kv_heads=4))
    config = sharding.default_mesh_config()
    config.update(data=1, fsdp=4, tensor=2)
    mesh = sharding.make_mesh(config, jax.devices())
    lora = LoraConfig(rank=2, alpha=2.0, targets=("q", "out", "up"))
    adapters = init_lora(jax.random.key(0), model, lora, mesh=mesh)
    spec = jax.sharding.PartitionSpec
    assert adapters["q"]["a"].sharding.spec == spec(None, "fsdp", None)
    assert adapters["q"]["b"].sharding.spec == spec(None, None, "tensor", None)
    assert adapters["out"]["a"].sharding.spec == spec(None, "tensor", None, None)
    assert adapters["out"]["b"].sharding.spec == spec(None, None, "fsdp")
    assert adapters["up"]["b"].sharding.spec == spec(None, None, "tensor")
    expected = lora_shardings(model, lora, mesh)
    for leaf, want in zip(jax.tree.leaves(adapters), jax.tree.leaves(expected), strict=True):
        assert leaf.sharding == want


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rank=0, alpha=1.0, targets=("q",)), "rank"),
        (dict(rank=2, alpha=1.0, targets=("qkv",)), "targets"),
    ],
)
def test_bad_lora_config_names_the_key(kwargs, match):
    """Invalid LoRA settings raise ValueError naming the lora.* key."""
    with pytest.raises(ValueError, match=match):
        LoraConfig(**kwargs)


def test_missing_target_names_the_weight():
    """Adapting 'gate' on a GELU model (which has no gate) names the missing weight."""
    model = build_model(tiny_config(mlp="gelu"))
    with pytest.raises(ValueError, match="mlp/gate"):
        init_lora(jax.random.key(0), model, LoraConfig(rank=2, alpha=2.0, targets=("gate",)))


def test_merged_params_export_as_an_ordinary_checkpoint(setup, tmp_path):
    """merge() gives a complete params tree: it exports (save_hf) and reloads bit for bit, with
    the adapted weights changed and the rest equal to the base."""
    from alignax.models.hf import load_hf, save_hf

    model, base, _, fresh = setup
    rng = np.random.default_rng(2)
    adapters = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), x.dtype), fresh)
    merged = merge(base, adapters, ALL)
    save_hf(tmp_path, tiny_config(), merged)
    _, reloaded = load_hf(tmp_path, max_len=model.config.max_len)
    jax.tree.map(np.testing.assert_array_equal, merged, reloaded)
    assert not np.array_equal(reloaded["blocks"]["attn"]["q"], base["blocks"]["attn"]["q"])
    np.testing.assert_array_equal(reloaded["embed"], base["embed"])
