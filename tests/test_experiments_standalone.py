"""End-to-end runs that need none of test_experiments.py's chained stages (their own module, so
they run beside that chain): GRPO and PPO from an arithmetic SFT policy, the reward model on a
local preference file, and bad input (an unknown config key, a model key that disagrees with its
checkpoint, a missing stage, a malformed file) failing with its name. Online runs from a fresh
policy: test_experiments_online.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignax.metrics import read_metrics
from alignax.workflows import online, ppo, preference, reward_model, sft
from configs import dpo as dpo_config
from configs import grpo as grpo_config
from configs import ppo as ppo_config
from configs import reward_model as reward_model_config
from configs import sft as sft_config
from tests.helpers import mesh_of, preset_config, short_run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def arithmetic_sft(tmp_path_factory):
    """A briefly SFT-ed arithmetic policy (some held-out problems answered exactly)."""
    workdir = tmp_path_factory.mktemp("arith") / "sft"
    overrides = short_run(**{"train.steps": 60, "sft.num_examples": 1024})
    sft.run(preset_config(sft_config, "arithmetic", **overrides), workdir)
    return workdir


def _assert_verifier_counts(values, count):
    """The verifier scores each sample 0 or 1, so each mean is a whole number of `count`ths."""
    scaled = np.asarray(values) * count
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-4)


@pytest.mark.parametrize("preset", ["runlocal", "rloo", "xpo", "nash_md"])
def test_grpo_on_arithmetic_runs_from_an_sft_policy(arithmetic_sft, tmp_path, preset):
    """GRPO, RLOO (sequence-level REINFORCE: one importance ratio per sample), XPO (pairs of
    a policy and a reference response) and Nash-MD (pairs of a policy and a mixture response)
    by preset."""
    config = preset_config(
        grpo_config, preset, **short_run(**{"train.steps": 6, "init_from": str(arithmetic_sft)})
    )
    summary = online.run(config, tmp_path / "grpo")
    # A batch's mean reward is a count over its samples, greedy accuracy one over the problems.
    logged = [m for m in read_metrics(tmp_path / "grpo") if "proxy/mean" in m]
    assert logged  # logged every log_every steps and at the last
    samples = config.train.batch_size * config.rollout.group_size
    _assert_verifier_counts([m["proxy/mean"] for m in logged], samples)
    problems = config.eval.num_prompts
    _assert_verifier_counts([summary["initial_reward_greedy"], summary["reward_greedy"]], problems)
    # The arithmetic SFT policy already answers some held-out problems exactly.
    assert summary["initial_reward_greedy"] > 0
    if preset == "xpo":  # the verifier judges each pair: its win rate is a count of pairs
        wins = [m["xpo/policy_win_rate"] for m in logged]
        _assert_verifier_counts(wins, config.train.batch_size)
    elif preset == "nash_md":  # sigmoid(r - r') of 0/1 rewards: 1/2 or sigmoid(+-1) per pair
        for m in logged:
            assert 1 - np.exp(-1) / (1 + np.exp(-1)) >= m["nash_md/preference"] >= 1 / (1 + np.e)
    else:  # only the sequence-level form logs its per-sequence ratio
        assert all(("policy/ratio" in m) == (preset == "rloo") for m in logged)


def test_ppo_runs_on_arithmetic_with_the_verifier_as_its_reward(arithmetic_sft, tmp_path):
    """The PPO experiment on the arithmetic task, by preset alone: the rollouts are scored by
    the verifier (a count of exact answers per batch), with `answer_tokens` carried in the batch,
    and the critic and KL controller work as on the review task."""
    config = preset_config(
        ppo_config,
        "arithmetic",
        **short_run(**{"train.steps": 4, "train.batch_size": 32, "init_from": str(arithmetic_sft)}),
    )
    summary = ppo.run(config, tmp_path / "ppo")
    metrics = [m for m in read_metrics(tmp_path / "ppo") if "proxy/mean" in m]
    assert metrics and all(m["proxy/mean"] == m["gold/mean"] for m in metrics)
    _assert_verifier_counts([m["proxy/mean"] for m in metrics], config.train.batch_size)
    _assert_verifier_counts([summary["gold_reward"]], config.eval.num_prompts)
    assert summary["steps"] == 4 and summary["kl_to_sft"] != 0 and summary["gold_reward"] > 0


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_unknown_config_key_fails_with_its_name(tmp_path):
    out = _cli(
        "experiments.sft",
        "--config",
        "configs/sft.py:runlocal",
        "--workdir",
        str(tmp_path),
        "--config.train.stepz=3",
    )
    assert out.returncode != 0 and "stepz" in out.stderr


def test_command_line_model_key_that_disagrees_with_init_from_fails_naming_it(tmp_path):
    """`init_from` naming a pretrained checkpoint sets the model's shape (checkpoint_shape); an
    explicit `--config.model.<key>`, or a `--model` preset, that disagrees fails before anything
    runs."""
    import jax

    from alignax.cli import apply_model_preset
    from alignax.experiment import checkpoint_shape
    from alignax.models import build_model
    from alignax.models.hf import save_hf
    from alignax.sharding import init_params, make_mesh

    config = preset_config(sft_config)
    model = build_model(config.model, heads=("lm",))
    params = init_params(model, jax.random.key(0), make_mesh(config.mesh))
    save_hf(tmp_path / "hf", config.model, params)
    out = _cli(
        "experiments.sft",
        "--config",
        "configs/sft.py:runlocal",
        "--workdir",
        str(tmp_path / "run"),
        f"--config.init_from={tmp_path / 'hf'}",
        f"--config.model.d_model={2 * config.model.d_model}",
    )
    assert out.returncode != 0
    assert f"model.d_model={2 * config.model.d_model} (set on the command line" in out.stderr
    assert not (tmp_path / "run").exists()
    # A preset named by --model that disagrees with the checkpoint (alignax.cli does this).
    config = preset_config(sft_config, init_from=str(tmp_path / "hf"))
    with pytest.raises(ValueError, match=r"model.d_model=256 \(set on the command line"):
        checkpoint_shape(config, apply_model_preset(config, "small", set()))
    # A pipeline's base policy sets the shape as init_from does.
    from configs import pipeline as pipeline_config

    pipeline = pipeline_config.get_config()
    with pipeline.unlocked():
        pipeline.base_from = str(tmp_path / "hf")
        pipeline.model.d_model = 2 * config.model.d_model
    checkpoint_shape(pipeline, overridden=set())
    assert pipeline.model.d_model == preset_config(sft_config).model.d_model


def test_a_model_preset_sets_the_shape_and_mesh_except_the_keys_given():
    from alignax.cli import apply_model_preset
    from alignax.models.presets import model_config

    config = preset_config(sft_config)
    set_keys = apply_model_preset(config, "smollm2_135m", {"model.max_len"})
    preset = model_config("smollm2_135m")
    assert (config.model.d_model, config.model.num_kv_heads) == (
        preset.d_model,
        preset.num_kv_heads,
    )
    assert config.model.max_len == preset_config(sft_config).model.max_len  # given: kept
    assert config.mesh.fsdp == -1 and "model.max_len" not in set_keys and "mesh.fsdp" in set_keys
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        apply_model_preset(config, "huge", set())


def test_missing_stage_checkpoint_names_the_directory(tmp_path):
    nowhere = str(tmp_path / "nowhere")
    config = preset_config(dpo_config, **{"init_from": nowhere, "labels.policy_from": nowhere})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        preference.run(config, tmp_path / "dpo")


def _preference_file(tmp_path):
    """A small UltraFeedback-style JSONL file and a sentencepiece tokenizer trained on it."""
    from alignax.data.tokenizer import SentencePieceTokenizer

    rng = np.random.default_rng(0)
    good = ["great", "lovely", "excellent", "tasty", "fresh"]
    bad = ["awful", "bland", "rude", "dull", "poor"]
    topics = ["food", "service", "room", "music", "price"]
    records = []
    for _ in range(160):
        topic = topics[rng.integers(5)]
        records.append(
            {
                "prompt": f"how was the {topic}?",
                "chosen": f"the {topic} was {good[rng.integers(5)]} and {good[rng.integers(5)]}.",
                "rejected": f"the {topic} was {bad[rng.integers(5)]} and {bad[rng.integers(5)]}.",
            }
        )
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    texts = [r[k] for r in records for k in ("prompt", "chosen", "rejected")]
    tokenizer = SentencePieceTokenizer.train(texts, vocab_size=60)
    tokenizer.save(tmp_path / "spm.model")
    return path, tmp_path / "spm.model"


def test_reward_model_trains_on_a_local_preference_file(tmp_path):
    path, spm = _preference_file(tmp_path)
    data = {"data.path": str(path), "data.tokenizer": str(spm), "data.eval_fraction": 0.2}
    rm = reward_model.run(
        preset_config(
            reward_model_config, **short_run(**{"train.steps": 60, "train.batch_size": 16}, **data)
        ),
        tmp_path / "rm",
    )
    assert rm["accuracy"] > 0.8  # the sentiment words separate chosen from rejected
    assert "gold_accuracy" not in rm  # real data has no gold reward
    # DPO on a local file: tests/test_data_hf_tokenizer.py (a checkpoint's own tokenizer).


def test_malformed_preference_file_names_file_and_line(tmp_path):
    path, spm = _preference_file(tmp_path)
    lines = path.read_text().splitlines()
    lines[6] = '{"prompt": "x", "chosen": "y"'  # truncated JSON on line 7
    path.write_text("\n".join(lines) + "\n")
    config = preset_config(
        reward_model_config, **{"data.path": str(path), "data.tokenizer": str(spm)}
    )
    with pytest.raises(ValueError, match=r"prefs\.jsonl:7"):
        reward_model.run(config, tmp_path / "rm")


def test_dpo_with_lora_trains_adapters_only_and_loads_downstream_merged(tmp_path):
    """`lora.rank > 0`: the state's params are the adapters, the base rides in ref_params (the
    reference) and does not change, and a later stage loading the workdir gets the merged
    policy."""
    import jax
    import orbax.checkpoint as ocp

    from alignax.checkpoint import checkpoint_steps, restore_params
    from alignax.models import build_model
    from alignax.models.lora import LoraConfig, merge
    from alignax.sharding import init_params
    from alignax.stages import stage_model_config

    path, spm = _preference_file(tmp_path)
    overrides = {
        "data.path": str(path),
        "data.tokenizer": str(spm),
        "data.eval_fraction": 0.2,
        "lora.rank": 4,
        "lora.targets": ("q", "v", "up"),
        "optimizer.learning_rate": 1e-2,
    }
    config = preset_config(
        dpo_config,
        # A first and a last checkpoint to compare.
        **short_run(
            **{"train.steps": 30, "train.batch_size": 16, "train.checkpoint_every": 15},
            **overrides,
        ),
    )
    summary = preference.run(config, tmp_path / "dpo")
    assert summary["eval_accuracy"] > 0.5 and summary["eval_margin"] > 0

    checkpoints = tmp_path / "dpo" / "checkpoints"
    first, *_, last = checkpoint_steps(checkpoints)
    states = [
        ocp.PyTreeCheckpointer().restore(checkpoints / str(s) / "state") for s in (first, last)
    ]
    assert set(states[-1]["params"]) == {"q", "v", "up"}  # only the adapters train
    jax.tree.map(np.testing.assert_array_equal, states[0]["ref_params"], states[-1]["ref_params"])
    base, adapters = states[-1]["ref_params"], states[-1]["params"]

    model = build_model(stage_model_config(tmp_path / "dpo"), heads=("lm",))
    like = init_params(model, jax.random.key(0), mesh_of((1, 1, 1), jax.devices()[:1]))
    merged = restore_params(checkpoints, like)
    assert set(merged) == set(like)
    expected = merge(base, adapters, LoraConfig(rank=4, alpha=16.0, targets=("q", "v", "up")))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), merged, expected
    )
    # The targeted weights moved by the low-rank update; the others are the base's.
    assert not np.allclose(merged["blocks"]["attn"]["q"], base["blocks"]["attn"]["q"])
    np.testing.assert_array_equal(merged["blocks"]["attn"]["k"], base["blocks"]["attn"]["k"])


def test_sft_with_lora_trains_adapters_only_and_loads_downstream_merged(tmp_path):
    """SFT with `lora.rank > 0` from a pretrained policy: only the adapters change, the base is
    the policy it started from, the loss falls, and the workdir loads as the merged policy."""
    import jax
    import orbax.checkpoint as ocp

    from alignax.checkpoint import checkpoint_steps
    from alignax.models.lora import LoraConfig, merge
    from alignax.sharding import make_mesh
    from alignax.stages import load_stage_model

    base_config = preset_config(sft_config, **short_run(**{"train.steps": 10}))
    sft.run(base_config, tmp_path / "base")
    overrides = {
        "train.steps": 20,
        "init_from": str(tmp_path / "base"),
        "lora.rank": 4,
        "lora.targets": ("q", "v"),
        "optimizer.learning_rate": 1e-2,
    }
    sft.run(preset_config(sft_config, **short_run(**overrides)), tmp_path / "lora")
    losses = [m["loss"] for m in read_metrics(tmp_path / "lora") if "loss" in m]
    assert losses[-1] < losses[0]
    checkpoints = tmp_path / "lora" / "checkpoints"
    state = ocp.PyTreeCheckpointer().restore(
        checkpoints / str(checkpoint_steps(checkpoints)[-1]) / "state"
    )
    assert set(state["params"]) == {"q", "v"}  # only the adapters train
    mesh = make_mesh(base_config.mesh)
    _, base = load_stage_model(tmp_path / "base", heads=("lm",), mesh=mesh)
    jax.tree.map(np.testing.assert_array_equal, state["ref_params"], jax.device_get(base))
    _, merged = load_stage_model(tmp_path / "lora", heads=("lm",), mesh=mesh)
    expected = merge(
        state["ref_params"], state["params"], LoraConfig(rank=4, alpha=16.0, targets=("q", "v"))
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
        jax.device_get(merged),
        expected,
    )
    assert not np.allclose(merged["blocks"]["attn"]["q"], base["blocks"]["attn"]["q"])


def test_a_stage_starts_from_a_pretrained_checkpoint_of_its_shape(tmp_path):
    """`init_from` naming a Hugging Face checkpoint directory: the stage's initial params are the
    checkpoint's, placed on the mesh; SFT trains from them; a checkpoint of another shape fails
    naming every differing model key."""
    import jax

    from alignax.experiment import initial_params
    from alignax.models import build_model
    from alignax.models.hf import save_hf
    from alignax.sharding import init_params, make_mesh

    config = preset_config(sft_config, **short_run(**{"train.steps": 2}))
    mesh = make_mesh(config.mesh)
    model = build_model(config.model, heads=("lm",))
    pretrained = init_params(model, jax.random.key(7), mesh)
    save_hf(tmp_path / "hf", config.model, pretrained)
    with config.unlocked():
        config.init_from = str(tmp_path / "hf")
    loaded = initial_params(model, config, mesh, jax.random.key(0))
    jax.tree.map(np.testing.assert_array_equal, loaded, pretrained)
    summary = sft.run(config, tmp_path / "sft")
    assert summary["steps"] == 2
    other = preset_config(
        sft_config, **{"init_from": str(tmp_path / "hf"), "model.num_layers": 3,
                       "model.mlp_dim": 128}
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"model.mlp_dim=128 \(the checkpoint's: 256\), "
                       r"model.num_layers=3 \(the checkpoint's: 2\)"):  # fmt: skip
        sft.run(other, tmp_path / "other")
