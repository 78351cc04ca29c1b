"""The Stage contract (alignax/workflows/): every registered stage kind trains through the one
runner, so LoRA, remat, bf16 compute and kill/resume hold for each of them, and every policy
stage's evaluation logs its samples' diversity. Parametrised over the registry: a stage kind
registered without a case in `_config` fails."""

import math

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from alignax.checkpoint import checkpoint_steps
from alignax.metrics import read_metrics
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model
from alignax.workflows import STAGES, run_stage
from configs import dpo, grpo, kto, ppo, process_reward, reward_model, sft
from tests.helpers import killed_then_resumed, preset_config

STEPS = 3
TRAIN = {
    "train.steps": STEPS,
    "train.batch_size": 8,
    "train.log_every": 1,
    "train.eval_every": 1000,
    "train.checkpoint_every": 1,
    "model.remat": True,
    "model.dtype": "bfloat16",
}
LORA = {"lora.rank": 2, "lora.targets": ("q", "v")}
LABELS = {"labels.source": "generator", "labels.max_new_tokens": 4}
# The stages that train a scorer, not a policy, and their new head (trained in full under LoRA).
SCORERS = {"reward_model": "reward", "process_reward": "value"}


def _config(kind: str, sft_dir):
    """The config of a tiny run of `kind` with LoRA (rank 2 on q and v), remat and bf16 (SFT
    and DPO: the LM head only where tokens are scored)."""
    cases = {
        "sft": (
            sft,
            "runlocal",
            {
                "sft.num_examples": 32,
                "sft.num_eval_examples": 8,
                "sft.scored_logits_only": True,
                "eval.num_prompts": 4,
                "eval.max_new_tokens": 4,
            },
        ),
        "reward_model": (
            reward_model,
            "runlocal",
            {
                **LABELS,
                "pairs.num_pairs": 16,
                "pairs.num_eval_pairs": 8,
            },
        ),
        "process_reward": (
            process_reward,
            "runlocal",
            {
                "process.solutions": "references",
                "process.num_solutions": 16,
                "process.num_eval_solutions": 8,
            },
        ),
        "dpo": (
            dpo,
            "runlocal",
            {
                **LABELS,
                "preferences.scored_logits_only": True,
                "pairs.num_pairs": 16,
                "pairs.num_eval_pairs": 8,
                "eval.num_prompts": 4,
                "eval.max_new_tokens": 4,
            },
        ),
        "kto": (
            kto,
            "runlocal",
            {
                **LABELS,
                "pairs.num_pairs": 8,
                "pairs.num_eval_pairs": 4,
                "eval.num_prompts": 4,
                "eval.max_new_tokens": 4,
            },
        ),
        "grpo": (
            grpo,
            "review",
            {
                "rollout.num_prompts": 16,
                "eval.num_prompts": 4,
                "rollout.max_new_tokens": 4,
                "rollout.group_size": 2,
                "train.batch_size": 4,
            },
        ),
        "ppo": (
            ppo,
            "runlocal",
            {
                "init_from": str(sft_dir),
                "rewards.source": "gold",
                "rewards.value_init": "policy",
                "rollout.num_prompts": 16,
                "eval.num_prompts": 4,
                "rollout.max_new_tokens": 4,
                "train.batch_size": 4,
            },
        ),
    }
    if kind not in cases:
        pytest.fail(f"stage kind {kind!r} has no case here: add a tiny config of it to _config")
    module, preset, overrides = cases[kind]
    return preset_config(module, preset, **{**TRAIN, **overrides, **LORA})


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory):
    """A policy for the stages that need one to start from (PPO)."""
    directory = tmp_path_factory.mktemp("sft")
    config = _config("sft", None)
    with config.unlocked():
        config.lora.rank = 0
        config.train.steps = 1
    run_stage(STAGES["sft"], config, directory)
    return directory


def _final_state(workdir):
    directory = workdir / "checkpoints"
    return ocp.PyTreeCheckpointer().restore(
        directory / str(checkpoint_steps(directory)[-1]) / "state"
    )


@pytest.mark.parametrize("name", sorted(STAGES))
def test_lora_remat_and_bf16_train_and_a_killed_run_resumes_to_the_same_state(
    name, sft_dir, tmp_path, monkeypatch
):
    kind = STAGES[name]
    config = _config(name, sft_dir)
    full = run_stage(kind, config, tmp_path / "full")
    resumed = killed_then_resumed(
        monkeypatch, lambda: run_stage(kind, config, tmp_path / "resumed"), kill_at=3
    )
    assert full["steps"] == resumed["steps"] == STEPS
    numbers = [v for v in full.values() if isinstance(v, float)]
    assert numbers and all(math.isfinite(v) for v in numbers)
    state, again = _final_state(tmp_path / "full"), _final_state(tmp_path / "resumed")
    jax.tree.map(np.testing.assert_array_equal, state["params"], again["params"])
    assert full == resumed
    if name not in SCORERS:  # a policy's evaluations watch its samples' diversity
        logged = [m for m in read_metrics(tmp_path / "full") if any("self_bleu" in k for k in m)]
        assert logged, f"{name} logs no diversity of its samples"
        for metrics in logged:
            for key in ("entropy", "distinct_1", "distinct_2", "self_bleu"):
                (value,) = [v for k, v in metrics.items() if k.endswith(f"/{key}")]
                assert 0 <= value <= (math.log(config.model.vocab_size) if key == "entropy" else 1)
    # Only the adapters train (and a head the base lacks, in full), over the base in
    # ref_params, and they moved.
    adapters = state["params"]["policy"] if name == "ppo" else state["params"]
    heads = {"heads"} if name in SCORERS else set()
    assert set(adapters) == {"q", "v"} | heads and "ref_params" in state
    assert np.any(np.asarray(adapters["q"]["b"]) != 0)
    if name != "ppo":  # a later stage loads the merged model (PPO's policy: test_experiments)
        head = SCORERS.get(name, "lm")
        _, merged = load_stage_model(tmp_path / "full", heads=(head,), mesh=make_mesh(config.mesh))
        base = state["ref_params"]
        assert not np.allclose(merged["blocks"]["attn"]["q"], base["blocks"]["attn"]["q"])
        np.testing.assert_array_equal(merged["blocks"]["attn"]["k"], base["blocks"]["attn"]["k"])
        for key in adapters.get("heads", {}):  # the trained head, not the base's
            np.testing.assert_array_equal(merged[key], adapters["heads"][key])
            assert not np.allclose(adapters["heads"][key], base[key])


def test_a_stage_that_lora_cannot_train_refuses_naming_the_key(sft_dir, tmp_path):
    config = _config("reward_model", sft_dir)
    with config.unlocked():
        config.reward.ensemble_size = 2
    with pytest.raises(ValueError, match=r"config lora\.rank=2: an ensemble"):
        run_stage(STAGES["reward_model"], config, tmp_path / "rm")


@pytest.mark.parametrize(("name", "switch"), [("sft", "sft"), ("dpo", "preferences")])
def test_scored_logits_only_reaches_the_loss_of_the_stage(
    name, switch, sft_dir, tmp_path, monkeypatch
):
    """`<section>.scored_logits_only` is applied: the stage's loss runs the LM head on a window
    as wide as the longest scored span of its data, not on every position (off: every one)."""
    from alignax import logprobs
    from alignax.models import Model
    from alignax.workflows.runner import Context

    widths = []
    apply = Model.apply

    def recording(self, *args, logits_at_BxW=None, **kwargs):
        widths.append(None if logits_at_BxW is None else logits_at_BxW.shape[-1])
        return apply(self, *args, logits_at_BxW=logits_at_BxW, **kwargs)

    monkeypatch.setattr(Model, "apply", recording)
    seen = {}
    for on in (False, True):
        config = _config(name, sft_dir)
        with config.unlocked():
            config.lora.rank = 0
            config[switch].scored_logits_only = on
        rngs = dict(zip(("init", "train", "eval"), jax.random.split(jax.random.key(0), 3)))
        stage = STAGES[name].build(config, Context(make_mesh(config.mesh), rngs, tmp_path))
        keys = ("tokens", "input_mask", "loss_mask")
        batch = {k: v[:4] for k, v in stage.train.items() if k in keys}
        state = type("State", (), {"ref_params": stage.params, "aux": None})
        widths.clear()
        loss, _ = stage.loss_fn(stage.params, state, batch, None)
        assert np.isfinite(float(loss))
        seen[on] = set(widths)
    assert seen[False] == {None}
    (width,) = seen[True]
    assert (
        logprobs.scored_width(stage.train["loss_mask"]) <= width < stage.train["tokens"].shape[-1]
    )
