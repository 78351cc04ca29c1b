"""The RL algorithms' frozen configs: every preset reads into one, and a wrong key or value is
refused by its full name before anything is built."""

import importlib

import ml_collections
import optax
import pytest

from alignax import rl
from tests.helpers import tiny_model


@pytest.mark.parametrize(
    "module, presets",
    [
        ("configs.ppo", ("runlocal", "gold", "ptx", "arithmetic")),
        (
            "configs.grpo",
            ("runlocal", "dr_grpo", "rloo", "rloo_token", "dapo", "review", "xpo", "nash_md"),
        ),
    ],
)
def test_every_preset_reads_into_its_algorithm_and_rollout_configs(module, presets):
    classes = {
        "ppo": rl.PPOConfig,
        "grpo": rl.GRPOConfig,
        "xpo": rl.XPOConfig,
        "nash_md": rl.NashMDConfig,
    }
    for preset in presets:
        config = importlib.import_module(module).get_config(preset)
        section = config.get("algorithm", "ppo")
        cls = classes[section]
        frozen = cls.from_config(config[section])
        assert dict(config[section].items()) == frozen.__dict__, preset
        rollout = rl.RolloutConfig.from_config(config.rollout)
        assert dict(config.rollout.items()) == rollout.__dict__, preset
        assert (rollout.group_size > 1) == (section == "grpo"), preset
        assert not {"grpo", "xpo", "nash_md"} - {section} & set(config), preset  # one section


@pytest.mark.parametrize(
    "cls, default, section, bad",
    [
        (rl.PPOConfig, rl.default_ppo_config, "ppo", {"kl_estimator": "nope"}),
        (rl.GRPOConfig, rl.default_grpo_config, "grpo", {"aggregation": "nope"}),
        (rl.RolloutConfig, rl.default_rollout_config, "rollout", {"max_new_tokens": 0}),
    ],
)
def test_unknown_missing_and_bad_keys_are_named(cls, default, section, bad):
    assert cls.from_config(default()) == cls()
    extra = default()
    extra.learning_rate = 1.0
    with pytest.raises(ValueError, match=rf"Unknown config key\(s\) {section}\.learning_rate"):
        cls.from_config(extra)
    missing = ml_collections.ConfigDict(dict(default().items()))
    first = next(iter(missing.keys()))
    del missing[first]
    with pytest.raises(ValueError, match=rf"Missing config key\(s\): {section}\.{first}"):
        cls.from_config(missing)
    ((key, value),) = bad.items()
    with pytest.raises(ValueError, match=rf"{section}\.{key}={value!r}"):
        cls(**bad)


def test_rollout_group_size_matches_the_algorithm():
    with pytest.raises(ValueError, match=r"rollout\.group_size=4: PPO samples each prompt once"):
        rl.make_ppo_step(
            policy=tiny_model(heads=("lm", "value")),
            value_model=None,
            score_fn=None,
            tx=optax.sgd(1.0),
            kl_controller=rl.kl_controller_from_config(rl.PPOConfig()),
            config=rl.PPOConfig(),
            rollout_config=rl.RolloutConfig(group_size=4),
            eos_id=2,
        )
    with pytest.raises(ValueError, match=r"rollout\.group_size=1: a group baseline needs"):
        rl.make_grpo_step(
            policy=tiny_model(),
            score_fn=None,
            tx=optax.sgd(1.0),
            config=rl.GRPOConfig(),
            rollout_config=rl.RolloutConfig(),
            eos_id=2,
        )
    with pytest.raises(ValueError, match=r"rollout\.temperature=0"):
        rl.RolloutConfig(temperature=0)


def test_the_grpo_surrogates_and_baselines_are_checked_together():
    with pytest.raises(ValueError, match=r"grpo\.loss='ppo' is not one of"):
        rl.GRPOConfig(loss="ppo")
    with pytest.raises(ValueError, match=r"grpo\.baseline='rloo' is sequence-level"):
        rl.GRPOConfig(baseline="rloo", loss="gspo")
    with pytest.raises(ValueError, match=r"grpo\.scale_rewards='global'"):
        rl.GRPOConfig(scale_rewards="global")


def test_steps_take_the_frozen_config_not_the_config_dict():
    with pytest.raises(TypeError, match="GRPOConfig"):
        rl.make_grpo_step(
            policy=tiny_model(),
            score_fn=None,
            tx=optax.sgd(1.0),
            config=ml_collections.ConfigDict({"grpo": rl.default_grpo_config()}),
            rollout_config=rl.RolloutConfig(group_size=2),
            eos_id=2,
        )


def test_an_online_algorithm_is_looked_up_by_name_and_an_unknown_one_refused():
    config = ml_collections.ConfigDict({"grpo": rl.default_grpo_config()})
    config.grpo.baseline = "rloo"
    common = dict(
        policy=tiny_model(),
        score_fn=lambda state, tokens, input_mask, loss_mask: tokens.sum(-1) * 0.0,
        rollout_config=rl.RolloutConfig(max_new_tokens=4, group_size=2),
        eos_id=2,
    )
    label, make_step = rl.online_step("grpo", config, **common)
    assert label == "rloo"  # the GRPO family is labelled by its baseline
    assert callable(make_step(tx=optax.sgd(0.1), policy_view=None))
    with pytest.raises(ValueError, match=r"config algorithm='reinforce' is not one of \('grpo'"):
        rl.online_step("reinforce", config, **common)
