"""End-to-end: the workflows run their runlocal configs for a few steps, in the order the pipeline
chains them (pretrain -> SFT -> reward model, shared by the downstream tests); SFT and PPO survive
a kill; metrics move the right way. The runs that need no chain: test_experiments_standalone.py."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignax.checkpoint import restore_params
from alignax.losses.reward import normalize_rewards
from alignax.metrics import read_metrics
from alignax.sharding import make_mesh
from alignax.stages import stage_finished
from alignax.workflows import ppo, preference, reward_model, sft
from configs import best_of_n as best_of_n_config
from configs import dpo as dpo_config
from configs import ppo as ppo_config
from configs import reward_model as reward_model_config
from configs import sft as sft_config
from experiments import best_of_n
from tests.helpers import killed_then_resumed, preset_config, short_run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _sft_stage_config(root, **overrides):
    return preset_config(
        sft_config,
        **short_run(
            **{
                "train.steps": 30,
                "init_from": str(root / "pretrain"),
                "sft.num_examples": 512,
                **overrides,
            }
        ),
    )


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """pretrain -> sft -> reward model, shared by the downstream workflow tests."""
    root = tmp_path_factory.mktemp("runs")
    sft.run(
        preset_config(
            sft_config, "pretrain", **short_run(**{"train.steps": 100, "sft.num_examples": 4096})
        ),
        root / "pretrain",
    )
    sft.run(_sft_stage_config(root), root / "sft")
    rm_summary = reward_model.run(
        preset_config(
            reward_model_config,
            **short_run(
                **{
                    "train.steps": 100,
                    "init_from": str(root / "pretrain"),
                    "labels.policy_from": str(root / "sft"),
                    # Labelled pairs are sampled from the SFT policy: the preset's 4,096 would be
                    # most of this fixture's time for 100 steps of 32.
                    "pairs.num_pairs": 1024,
                    "pairs.num_eval_pairs": 256,
                }
            ),
        ),
        root / "rm",
    )
    return root, rm_summary


def _same_params(dir_a, dir_b, like):
    a = restore_params(Path(dir_a) / "checkpoints", like)
    b = restore_params(Path(dir_b) / "checkpoints", like)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_sft_learns_and_resumes_to_the_uninterrupted_result(runs, tmp_path, monkeypatch):
    root, _ = runs
    config = preset_config(
        sft_config,
        **short_run(
            **{
                "train.steps": 12,
                "train.checkpoint_every": 5,  # the kill at step 8 resumes from step 5
                "init_from": str(root / "pretrain"),
                "sft.num_examples": 512,
            }
        ),
    )
    full = sft.run(config, tmp_path / "full")
    resumed = killed_then_resumed(
        monkeypatch, lambda: sft.run(config, tmp_path / "killed"), kill_at=8
    )
    assert resumed == full
    from alignax.models import build_model
    from alignax.sharding import init_params, make_mesh

    model = build_model(config.model)
    like = init_params(model, jax.random.key(0), make_mesh(config.mesh))
    _same_params(tmp_path / "full", tmp_path / "killed", like)
    pretrain_nll = json.loads((root / "pretrain" / "summary.json").read_text())["eval_nll"]
    assert pretrain_nll < 3.0  # below the ~4.0 nats of a uniform guess over 57 words


def test_a_finished_stage_is_skipped_only_with_the_same_config_and_upstream(runs):
    """What multi-stage experiments skip on a rerun: the SFT stage with its own config, or with
    another logging cadence; not with a change that alters its params, nor on another upstream."""
    root, _ = runs
    assert stage_finished(_sft_stage_config(root), root / "sft")
    assert stage_finished(_sft_stage_config(root, **{"train.log_every": 7}), root / "sft")
    assert not stage_finished(_sft_stage_config(root, **{"train.steps": 31}), root / "sft")
    other_upstream = _sft_stage_config(root, init_from=str(root / "sft"))
    assert not stage_finished(other_upstream, root / "sft")
    assert not stage_finished(_sft_stage_config(root), root / "missing")


def test_reward_model_beats_chance(runs):
    _, summary = runs
    assert summary["accuracy"] > 0.6 and summary["gold_accuracy"] > 0.6
    assert summary["gold_spearman"] > 0.3


def _from_sft(root, num_pairs):
    """DPO from the SFT policy, on `num_pairs` pairs of that policy's samples (sampling them is
    most of a short run's time)."""
    return {
        "init_from": str(root / "sft"),
        "labels.policy_from": str(root / "sft"),
        "pairs.num_pairs": num_pairs,
        "pairs.num_eval_pairs": 128,
    }


def test_dpo_implicit_margin_grows(runs, tmp_path):
    """The held-out implicit-reward margin starts at exactly 0 (policy = reference) and DPO makes
    it positive, ranking held-out pairs above chance."""
    root, _ = runs
    summary = preference.run(
        preset_config(dpo_config, **short_run(**{"train.steps": 40, **_from_sft(root, 1280)})),
        tmp_path,
    )
    assert summary["eval_margin"] > 0.05 and summary["eval_accuracy"] > 0.55
    assert summary["kl_to_reference"] > 0


def test_ipo_preset_trains_with_the_ipo_objective(runs, tmp_path):
    """The 'ipo' preset with beta 0.25 (not its default 0.1, so a dropped override shows)
    trains on (h - 1 / (2 beta))^2, h = u_c - u_r, and logs the margin beta h. At step 1 the
    policy is the reference, so h = 0 and the loss is exactly 1 / (4 beta^2) = 4 (DPO's would be
    log 2, IPO at beta 0.1 25). At every step, and on the held-out pairs, the mean loss is at
    least the square of the mean h's distance to 1 / (2 beta) (Jensen; equality up to the
    variance of h), with the mean h read from the margin and, on the training batches, from the
    mean log-ratios kl/chosen - kl/rejected."""
    root, _ = runs
    beta = 0.25
    overrides = {"train.steps": 5, "train.log_every": 1, "loss.hyperparameters.beta": beta}
    summary = preference.run(
        preset_config(dpo_config, "ipo", **short_run(**overrides, **_from_sft(root, 160))),
        tmp_path,
    )
    assert summary["loss_name"] == "ipo"
    records = read_metrics(tmp_path)
    train = [m for m in records if "loss" in m]
    assert [m["step"] for m in train] == [1, 2, 3, 4, 5]
    assert train[0]["rewards/margin"] == pytest.approx(0.0, abs=1e-4)
    assert train[0]["loss"] == pytest.approx(1 / (4 * beta**2), rel=1e-3)
    target = 1 / (2 * beta)
    for m in train:
        h = m["kl/chosen"] - m["kl/rejected"]
        assert m["rewards/margin"] == pytest.approx(beta * h, rel=1e-3, abs=1e-5), m
        assert m["loss"] >= (h - target) ** 2 - 1e-3, m
    assert train[-1]["kl/chosen"] != 0.0  # the policy moved off the reference
    (held_out,) = [m for m in records if "eval/loss" in m]
    assert held_out["eval/margin"] == pytest.approx(summary["eval_margin"])
    assert held_out["eval/loss"] >= (held_out["eval/margin"] / beta - target) ** 2 - 1e-3


def test_ppo_raises_proxy_reward_and_resumes(runs, tmp_path, monkeypatch):
    root, _ = runs
    overrides = short_run(
        **{
            "train.steps": 16,
            "train.batch_size": 32,
            "init_from": str(root / "sft"),
            "rewards.reward_model_from": str(root / "rm"),
            "rollout.num_prompts": 512,
            "eval.num_prompts": 32,
            "train.checkpoint_every": 4,
            # The alarm at its strictest: any disagreement with gold fires it.
            "judge_drift.track": True,
            "judge_drift.min_accuracy": 1.0,
            "judge_drift.patience": 1,
        }
    )
    config = preset_config(ppo_config, **overrides)
    full = ppo.run(config, tmp_path / "full")
    records = read_metrics(tmp_path / "full")
    proxy = [m["proxy/mean"] for m in records if "proxy/mean" in m]
    assert proxy[-1] > proxy[0]
    checks = [m for m in records if "eval/judge_accuracy" in m]
    assert checks and all(0 <= m["eval/judge_accuracy"] <= 1 for m in checks)
    assert all(0 < m["eval/judge_pairs"] <= 32 for m in checks)
    low = [m["step"] for m in checks if m["eval/judge_accuracy"] < 1.0]
    assert full["judge_drift_step"] == (low[0] if low else None)
    # The alarm's state is in the workdir: the resumed run ends with the same summary.
    resumed = killed_then_resumed(
        monkeypatch, lambda: ppo.run(config, tmp_path / "killed"), kill_at=11
    )
    assert resumed == full
    assert full["kl_to_sft"] > 0


def test_ppo_continues_another_ppo_runs_policy_against_the_sft_reference(runs, tmp_path):
    """`init_from` a PPO workdir starts from its policy (not its value model), and
    `reference_from` keeps the KL penalty's reference at the SFT policy: the continued run's
    step-0 evaluation (same prompts, same key) is the first run's final one, its KL to SFT
    included; without `reference_from` the reference is the starting policy, KL 0."""
    root, _ = runs
    base = {
        "rewards.reward_model_from": str(root / "rm"),
        "rewards.value_init": "policy",
        "train.batch_size": 16,
        "rollout.num_prompts": 64,
        "eval.num_prompts": 16,
    }
    first = ppo.run(
        preset_config(
            ppo_config, **short_run(**base, **{"train.steps": 3, "init_from": str(root / "sft")})
        ),
        tmp_path / "first",
    )
    assert first["kl_to_sft"] > 0
    final = [m for m in read_metrics(tmp_path / "first") if "eval/kl" in m][-1]

    def continued(name, **overrides):
        config = preset_config(
            ppo_config,
            **short_run(
                **base, **{"train.steps": 1, "init_from": str(tmp_path / "first"), **overrides}
            ),
        )
        ppo.run(config, tmp_path / name, evaluate_at_start=True)
        return next(m for m in read_metrics(tmp_path / name) if "eval/kl" in m)

    start = continued("continued", reference_from=str(root / "sft"))
    assert start["step"] == 0
    for key in ("eval/kl", "eval/gold", "eval/length"):
        assert start[key] == pytest.approx(final[key], rel=1e-4, abs=1e-6), key
    assert continued("own_reference")["eval/kl"] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="reference_from=.*lora.rank=4"):
        ppo.check_config(
            preset_config(
                ppo_config,
                **{"init_from": "x", "reference_from": "y", "lora.rank": 4},
            ),
            None,
        )


def test_length_debiased_rewards_carry_no_length_on_the_initial_samples(runs, tmp_path):
    """`rewards.length_debias`: the reward model's slope on length, fitted where its scores
    are normalised, is removed first; the rewards there have mean 0, std 1 and no slope on
    length. A run with it trains, and its evaluations report the score it optimises."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 30, 256).astype(np.float64)
    scores = 0.5 * lengths + rng.normal(size=256)
    plain = ppo.reward_scaling(scores, lengths, length_debias=False)
    assert "reward_length_slope" not in plain
    scaling = ppo.reward_scaling(scores, lengths, length_debias=True)
    slope = float(scaling["reward_length_slope"])
    assert slope == pytest.approx(np.polyfit(lengths, scores, 1)[0], rel=1e-5)
    rewards = normalize_rewards(
        scores - slope * lengths, scaling["reward_gain"], scaling["reward_bias"]
    )
    assert float(np.mean(rewards)) == pytest.approx(0.0, abs=1e-5)
    assert float(np.std(rewards)) == pytest.approx(1.0, abs=1e-4)
    assert np.polyfit(lengths, np.asarray(rewards), 1)[0] == pytest.approx(0.0, abs=1e-5)

    root, _ = runs
    overrides = short_run(
        **{
            "train.steps": 2,
            "train.batch_size": 32,
            "init_from": str(root / "sft"),
            "rewards.reward_model_from": str(root / "rm"),
            "rewards.length_debias": True,
            "rollout.num_prompts": 128,
            "eval.num_prompts": 32,
        }
    )
    summary = ppo.run(preset_config(ppo_config, **overrides), tmp_path / "ppo")
    assert np.isfinite(summary["proxy_reward"]) and summary["steps"] == 2


def test_ppo_standardizes_each_ensemble_member_before_combining(tmp_path):
    """An ensemble reward model: each member's scores of the initial policy's samples are
    standardised alone (their offsets would otherwise decide the minimum), then combined (PPO
    runs against the worst case end to end in the ensemble study's smoke run)."""
    members = preset_config(
        reward_model_config,
        "ensemble",
        **short_run(
            **{
                "train.steps": 4,
                "reward.ensemble_size": 2,
                "labels.source": "generator",
                "pairs.num_pairs": 64,
                "pairs.num_eval_pairs": 16,
            }
        ),
    )
    reward_model.run(members, tmp_path / "rm")
    overrides = {
        "rewards.reward_model_from": str(tmp_path / "rm"),
        "rewards.ensemble_size": 2,
        "rewards.ensemble_method": "min",
    }
    config = preset_config(ppo_config, **overrides)
    mesh = make_mesh(config.mesh)
    reward_fn, params, model = ppo.build_reward(config, mesh)
    tokens = jax.random.randint(jax.random.key(0), (64, 12), 3, 20)
    mask = jnp.ones_like(tokens)
    # The second member shifted by +5: unstandardised, it would never be the minimum.
    members = dict(params["members"])
    members["reward_bias"] = members["reward_bias"].at[1].add(5.0)
    fitted = ppo.standardize_members(
        model, params | {"members": members}, lambda proxy_fn: {"proxy": proxy_fn(tokens, mask)}
    )
    raw = ppo.member_rewards(model, members, tokens, mask)
    standardized = normalize_rewards(
        raw, fitted["member_gain"][:, None], fitted["member_bias"][:, None]
    )
    np.testing.assert_allclose(np.mean(standardized, axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.std(standardized, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(
        reward_fn(fitted, tokens, mask), np.min(standardized, axis=0), rtol=1e-5, atol=1e-5
    )


def test_ppo_with_lora_trains_policy_adapters_over_the_sft_reference(runs, tmp_path):
    """`lora.rank > 0`: the policy's trained params are adapters, the SFT policy is both base
    and reference (unchanged), the policy moves off it; a value head on the policy is refused
    (it would not train)."""
    import orbax.checkpoint as ocp

    from alignax.checkpoint import checkpoint_steps

    root, _ = runs
    overrides = short_run(
        **{
            "train.steps": 4,
            "train.checkpoint_every": 2,  # a first and a last checkpoint to compare
            "train.batch_size": 32,
            "init_from": str(root / "sft"),
            "rewards.reward_model_from": str(root / "rm"),
            "rollout.num_prompts": 128,
            "eval.num_prompts": 32,
            "lora.rank": 4,
            "lora.targets": ("q", "v", "up"),
            "optimizer.learning_rate": 1e-2,
        }
    )
    summary = ppo.run(preset_config(ppo_config, **overrides), tmp_path / "ppo")
    assert summary["kl_to_sft"] > 0
    checkpoints = tmp_path / "ppo" / "checkpoints"
    state = ocp.PyTreeCheckpointer().restore(
        checkpoints / str(checkpoint_steps(checkpoints)[-1]) / "state"
    )
    assert set(state["params"]["policy"]) == {"q", "v", "up"}
    first = ocp.PyTreeCheckpointer().restore(
        checkpoints / str(checkpoint_steps(checkpoints)[0]) / "state"
    )
    jax.tree.map(np.testing.assert_array_equal, first["ref_params"], state["ref_params"])
    # Downstream (pipeline, instructgpt) the PPO policy loads merged: the SFT base + adapters.
    from alignax.models.lora import LoraConfig, merge
    from alignax.sharding import make_mesh
    from alignax.stages import load_stage_model

    mesh = make_mesh(preset_config(ppo_config).mesh)
    _, sft_params = load_stage_model(root / "sft", heads=("lm",), mesh=mesh)
    loaded = restore_params(checkpoints, {"policy": sft_params})["policy"]
    lora = LoraConfig(rank=4, alpha=16.0, targets=("q", "up", "v"))
    expected = merge(state["ref_params"], state["params"]["policy"], lora)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), loaded, expected)
    moved = lambda a, b: not np.allclose(a, b)  # noqa: E731
    assert any(jax.tree.leaves(jax.tree.map(moved, loaded, sft_params)))
    shared = preset_config(ppo_config, **{**overrides, "rewards.value_init": "shared"})
    with pytest.raises(ValueError, match="value head on the policy would not train"):
        ppo.run(shared, tmp_path / "shared")


def test_best_of_n_gold_and_proxy_rise_with_n(runs, tmp_path):
    root, _ = runs
    summary = best_of_n.run(
        preset_config(
            best_of_n_config,
            **{
                "init_from": str(root / "sft"),
                "rewards.reward_model_from": str(root / "rm"),
                "best_of_n.num_prompts": 32,
                "best_of_n.pool_size": 16,
            },
        ),
        tmp_path,
    )
    # Both rewards are standardised on the policy's own samples: n = 1 scores exactly 0.
    assert summary["n1/proxy"] == pytest.approx(0, abs=1e-9)
    assert summary["n1/gold"] == pytest.approx(0, abs=1e-9)
    assert summary["n16/proxy"] > 0.5 and summary["n16/proxy_se"] > 0
    assert summary["n16/gold"] > 0
    # Repeated responses make the closed form an upper bound of the pool's KL.
    assert 0 < summary["n16/kl_pool"] <= summary["n16/kl_bound"] + 1e-9
    figure = tmp_path / "figures" / "best_of_n"
    assert figure.with_suffix(".png").exists() and figure.with_suffix(".pdf").exists()
    assert "Written by" in (tmp_path / "results.md").read_text()


def test_preference_pairs_are_the_policys_own_samples_on_the_requested_split(runs):
    """labels.source='policy': responses are the SFT policy's samples (near-greedy sampling
    gives its greedy response twice in every pair), prompts come from the requested split, and
    label_probability is the annotator's P(first preferred)."""
    from alignax import labels
    from alignax.sampling import sample
    from alignax.sharding import make_mesh
    from alignax.stages import load_stage_model
    from alignax.tasks import get_task

    root, _ = runs
    task = get_task("review")
    config = labels.default_labels_config(policy_from=str(root / "sft"), flip_rate=0.1)
    mesh = make_mesh(preset_config(sft_config).mesh)
    pairs = labels.comparisons(config, task, mesh, 64, seed=3, split="eval")
    assert pairs["tokens"].shape[:2] == (64, 2)
    prompt_ends = np.argmax(pairs["loss_mask"][:, 0], axis=1)
    prompts = [list(row[1:end]) for row, end in zip(pairs["tokens"][:, 0], prompt_ends)]
    assert all(task.prompt_split(p) == "eval" for p in prompts)
    gold = pairs["gold_reward"]
    clean = 1 / (1 + np.exp(-(gold[:, 0] - gold[:, 1]) / config.annotator_temperature))
    np.testing.assert_allclose(pairs["label_probability"], 0.9 * clean + 0.1 * (1 - clean), 1e-5)

    greedy_config = labels.default_labels_config(policy_from=str(root / "sft"), temperature=1e-6)
    greedy = labels.comparisons(greedy_config, task, mesh, 8, seed=4, split="train")
    np.testing.assert_array_equal(greedy["tokens"][:, 0], greedy["tokens"][:, 1])
    model, params = load_stage_model(root / "sft", heads=("lm",), mesh=mesh)
    ends = np.argmax(greedy["loss_mask"][:, 0], axis=1)
    encoded = task.encode_prompts([list(r[1:e]) for r, e in zip(greedy["tokens"][:, 0], ends)])
    out = sample(
        model,
        params,
        encoded["prompt_tokens"],
        encoded["prompt_mask"],
        jax.random.key(0),
        max_new_tokens=32,
        eos_id=task.eos_id,
        temperature=0.0,
    )
    width = encoded["prompt_tokens"].shape[1]
    responses = zip(greedy["tokens"][:, 0], greedy["loss_mask"][:, 0], out.tokens, out.loss_mask)
    for row, row_mask, tokens, mask in responses:
        expected = np.asarray(tokens)[width:][np.asarray(mask)[width:] > 0]
        np.testing.assert_array_equal(row[row_mask > 0], expected)
