"""The transformer: padding invariance, heads, config validation, backbone transplant."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from alignax import logprobs
from alignax.models import ModelConfig, build_model, default_model_config, transplant_backbone
from alignax.models.config import at_width
from tests.helpers import pad_rows, tiny_config, tiny_model

VARIANTS = {
    "llama": {},
    "gpt2": dict(
        mlp="gelu", norm="layernorm", positions="learned", tie_embeddings=False, num_kv_heads=4
    ),
}


@functools.lru_cache
def _model_and_params(variant):
    model = tiny_model(heads=("lm", "reward", "value"), **VARIANTS[variant])
    params = model.init(jax.random.key(0))
    # Non-zero value head so the value test is not trivially zero.
    params["value_head"] = jax.random.normal(jax.random.key(1), params["value_head"].shape)
    return model, params


@functools.lru_cache
def _forward(variant):
    model, params = _model_and_params(variant)

    @jax.jit
    def forward(tokens, input_mask, loss_mask):
        out = model.apply(params, tokens, input_mask)
        logps = logprobs.sequence_logps(out["logits"], tokens, loss_mask)["sum"]
        return logps, out["rewards"], out["values"]

    return forward


sequences = st.lists(st.lists(st.integers(3, 31), min_size=2, max_size=10), min_size=1, max_size=3)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@settings(max_examples=12, deadline=None)
@given(rows=sequences, prompt_len=st.integers(1, 2))
def test_padding_side_and_amount_do_not_change_outputs(variant, rows, prompt_len):
    """Sequence log-probs, rewards and per-token values agree (1e-5) under left, right and extra
    padding: positions come from the mask and padded keys are masked out."""
    forward = _forward(variant)
    results = {}
    for side, length in (("right", 12), ("left", 12), ("right", 20), ("left", 20)):
        tokens, mask = pad_rows(rows, length, side)
        loss_mask = mask * (jnp.cumsum(mask, axis=1) > prompt_len)
        logps, rewards, values = forward(tokens, mask, loss_mask)
        real_values = [np.asarray(values[i])[np.asarray(mask[i]) > 0] for i in range(len(rows))]
        results[(side, length)] = (np.asarray(logps), np.asarray(rewards), real_values)
    ref_logps, ref_rewards, ref_values = results[("right", 12)]
    for logps, rewards, values in results.values():
        np.testing.assert_allclose(logps, ref_logps, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(rewards, ref_rewards, atol=1e-5, rtol=1e-5)
        for v, ref in zip(values, ref_values):
            np.testing.assert_allclose(v, ref, atol=1e-5, rtol=1e-5)


def test_reward_reads_the_last_real_token():
    """Changing any token before the last one changes the reward through attention, but the
    reward is the head applied to the hidden state at the last real position."""
    model, params = _model_and_params("llama")
    tokens, mask = pad_rows([[5, 6, 7], [5, 6, 7, 8]], 6)
    out = model.apply(params, tokens, mask)
    hidden_last = out["hidden"][jnp.arange(2), jnp.array([2, 3])]
    expected = hidden_last @ params["reward_head"][:, 0] + params["reward_bias"][0]
    np.testing.assert_allclose(out["rewards"], expected, rtol=1e-6)


def test_head_initialisation():
    """Value head starts at zero; reward head ~ N(0, 1/(d+1)) (std within 25%)."""
    model = tiny_model(heads=("lm", "reward", "value"), d_model=256, num_heads=4)
    params = model.init(jax.random.key(0))
    assert np.all(np.asarray(params["value_head"]) == 0)
    std = float(jnp.std(params["reward_head"]))
    assert abs(std - 1 / np.sqrt(257)) < 0.25 / np.sqrt(257)


def test_reward_model_from_policy_shares_the_backbone():
    """A reward model initialised from a policy computes the policy's hidden states exactly."""
    policy = tiny_model(heads=("lm",))
    reward = tiny_model(heads=("reward",))
    policy_params = policy.init(jax.random.key(0))
    reward_params = transplant_backbone(policy_params, reward.init(jax.random.key(1)))
    tokens, mask = pad_rows([[4, 5, 6]], 5)
    np.testing.assert_array_equal(
        policy.apply(policy_params, tokens, mask)["hidden"],
        reward.apply(reward_params, tokens, mask)["hidden"],
    )
    assert "reward_head" in reward_params and "lm_head" not in reward_params


def test_transplant_rejects_a_different_backbone():
    small = tiny_model().init(jax.random.key(0))
    wide = build_model(tiny_config(d_model=64), heads=("reward",)).init(jax.random.key(0))
    with pytest.raises(ValueError, match="shape"):
        transplant_backbone(small, wide)


def test_grouped_query_attention_is_mha_with_each_kv_head_shared_by_its_query_group():
    """GQA with 2 K/V heads for 4 query heads equals multi-head attention whose K/V heads are
    [kv0, kv0, kv1, kv1] (query heads 0-1 read K/V head 0, 2-3 head 1, as in Llama); changing
    one K/V head changes the output."""
    tokens, mask = pad_rows([[3, 4, 5, 6], [7, 8, 9, 0]], 4)
    gqa = tiny_model(num_kv_heads=2)
    heads = gqa.config.num_heads
    assert heads == 4
    params = gqa.init(jax.random.key(0))
    assert params["blocks"]["attn"]["k"].shape == (2, 32, 2, 8)
    mha = tiny_model(num_kv_heads=heads)
    repeated = jax.tree.map(lambda x: x, params)
    for name in ("k", "v"):
        repeated["blocks"]["attn"][name] = jnp.repeat(params["blocks"]["attn"][name], 2, 2)
    out = gqa.apply(params, tokens, mask)["logits"]
    np.testing.assert_allclose(out, mha.apply(repeated, tokens, mask)["logits"], atol=1e-5)
    changed = jax.tree.map(lambda x: x, repeated)
    v = changed["blocks"]["attn"]["v"]
    changed["blocks"]["attn"]["v"] = v.at[:, :, 0].set(v[:, :, 0] + 0.5)
    assert not np.allclose(out, mha.apply(changed, tokens, mask)["logits"], atol=1e-3)


def test_causality_future_tokens_do_not_change_past_logits():
    model, params = _model_and_params("llama")
    a, mask = pad_rows([[3, 4, 5, 6, 7]], 5)
    b = a.at[0, 4].set(20)
    la = model.apply(params, a, mask)["logits"]
    lb = model.apply(params, b, mask)["logits"]
    np.testing.assert_allclose(la[:, :4], lb[:, :4], atol=1e-6)
    assert not np.allclose(la[:, 4], lb[:, 4])


def test_scan_over_layers_matches_unrolled_layers():
    """Running the stacked layers under lax.scan equals applying each layer's slice in turn."""
    model, params = _model_and_params("llama")
    tokens, mask = pad_rows([[3, 4, 5, 6]], 4)
    hidden = model.apply(params, tokens, mask)["hidden"]
    module = nnx.merge(model.graphdef, params)
    x = module.embed[...][tokens]
    graph, state = nnx.split(module.blocks)
    positions = jnp.arange(4)[None]
    for i in range(2):
        block = nnx.merge(graph, jax.tree.map(lambda s, i=i: s[i], state))
        x, _ = block(x, positions, mask, jnp.arange(4), None, 0, None)
    np.testing.assert_allclose(module.final_norm(x), hidden, atol=1e-5)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (dict(num_heads=5), "model.num_heads"),
        (dict(num_kv_heads=3), "model.num_kv_heads"),
        (dict(mlp="relu"), "model.mlp"),
        (dict(norm="batchnorm"), "model.norm"),
        (dict(d_model=0), "model.d_model"),
        (dict(d_model=36, num_heads=4, positions="rope"), "model.positions"),
        (dict(dropout_rate=1.5), "model.dropout_rate"),
    ],
)
def test_impossible_shapes_fail_naming_the_key(overrides, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        ModelConfig.from_config(tiny_config(**overrides))


def test_unknown_config_key_is_named():
    config = tiny_config()
    config.unlock()
    config.n_layer = 3
    with pytest.raises(ValueError, match=r"model\.n_layer"):
        build_model(config)


def test_sequence_longer_than_max_len_fails_with_the_key():
    model, params = _model_and_params("llama")
    tokens = jnp.ones((1, 40), jnp.int32)
    with pytest.raises(ValueError, match=r"model\.max_len=32"):
        model.apply(params, tokens, tokens)


def test_param_count_formula_matches_the_params():
    for variant in VARIANTS:
        model, params = _model_and_params(variant)
        assert model.config.num_params(model.heads) == sum(x.size for x in jax.tree.leaves(params))


def test_every_param_has_logical_axes_of_its_rank():
    model, params = _model_and_params("gpt2")
    flat_axes = jax.tree.leaves(model.logical_axes, is_leaf=lambda x: isinstance(x, tuple))
    flat_params = jax.tree.leaves(params)
    assert len(flat_axes) == len(flat_params)
    for axes, p in zip(flat_axes, flat_params):
        assert len(axes) == p.ndim
    assert tuple(model.logical_axes["blocks"]["mlp"]["up"]) == ("layers", "embed", "mlp")


def test_remat_policies_keep_the_gradients_and_save_less_memory_in_order():
    """model.remat recomputes each layer in the backward pass; model.remat_policy chooses what a
    layer still saves. Every policy gives the gradients of no remat; XLA's temporaries shrink
    from no remat to "dots" (every matmul output saved) to "dots_no_batch" (not attention's) to
    "nothing"."""
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 64, (8, 128)))

    def gradients_and_memory(**remat):
        config = default_model_config()
        config.update(num_layers=3, d_model=64, mlp_dim=256, max_len=128, **remat)
        model = build_model(config)
        params = model.init(jax.random.key(0))

        def loss(params):
            logits = model.apply(params, tokens, jnp.ones_like(tokens))["logits"]
            return jax.nn.log_softmax(logits).mean()

        step = jax.jit(jax.value_and_grad(loss))
        memory = step.lower(params).compile().memory_analysis().temp_size_in_bytes
        return step(params), memory

    (value, grads), no_remat = gradients_and_memory(remat=False)
    memory = {}
    for policy in ("dots", "dots_no_batch", "nothing"):
        (v, g), memory[policy] = gradients_and_memory(remat=True, remat_policy=policy)
        assert float(v) == pytest.approx(float(value), rel=1e-6)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(grads), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert no_remat > memory["dots"] > memory["dots_no_batch"] > memory["nothing"]


def test_unknown_remat_policy_is_refused_by_key():
    config = default_model_config()
    config.remat_policy = "everything"
    with pytest.raises(ValueError, match="model.remat_policy='everything'"):
        build_model(config)


def test_at_width_keeps_head_dimension_kv_ratio_and_mlp_ratio():
    model = default_model_config()  # d_model 64, 4 heads of 16, mlp 256
    model.num_kv_heads = 2
    for width in (32, 128):
        m = at_width(model, width)
        assert m.d_model == width and m.d_model // m.num_heads == 16
        assert m.num_heads // m.num_kv_heads == 2
        assert m.mlp_dim * model.d_model == model.mlp_dim * width
    assert at_width(model, 16).num_kv_heads == 1  # one head: at least one key/value head
    assert at_width(model, 64).to_dict() == model.to_dict()
    with pytest.raises(ValueError, match="head dimension 16"):
        at_width(model, 40)
