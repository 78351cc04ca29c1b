"""Online RL iterations as single jitted steps: rollout -> score -> advantages -> epochs of
minibatch updates under `lax.scan`, all on device, with the signature of every train step:

    step = make_ppo_step(policy=..., value_model=..., score_fn=..., tx=..., config=PPOConfig(),
                         rollout_config=RolloutConfig())
    step = make_grpo_step(policy=..., score_fn=..., tx=..., config=GRPOConfig(),
                          rollout_config=RolloutConfig(group_size=8))
    state, metrics = step(state, prompt_batch, rng)

so the RL loops run in the shared host loop (`alignax.training.train_loop`) like supervised ones.

    rollout.py     what is sampled (`RolloutConfig`, the `rollout` config section) and the
                   forward passes a rollout needs (`collect`, response functions)
    advantages.py  KL estimators, KL-penalised rewards, GAE, whitening, group baselines
    kl_control.py  fixed and adaptive KL coefficient controllers
    common.py      the minibatch-update loop, rollout metrics
    ppo.py         PPO / PPO-ptx with a separate critic or a value head on the policy
    grpo.py        GRPO, Dr. GRPO, RLOO and the GSPO / CISPO / SAPO surrogates
    xpo.py         XPO: online DPO on (policy, reference) response pairs with an exploration term
    nash_md.py     Nash-MD: policy gradient on the judge's preference of the policy's response
                   over one from the geometric mixture of policy and reference
    algorithms.py  the online algorithms a config names (`algorithm`): GRPO family, XPO, Nash-MD

`score_fn(state, tokens, input_mask, loss_mask, **inputs) -> [B]` scores full responses (a reward
model, a task's reward or a verifier); `inputs` are the prompt-batch entries named in the step's
`score_inputs` (a task's `reward_inputs`). `gold_fn(tokens, input_mask, loss_mask, **inputs)`, when
given, is only logged (`gold/mean`), which is how proxy-vs-gold over-optimisation is watched.
"""

from alignax.rl.algorithms import ONLINE_ALGORITHMS, online_step
from alignax.rl.grpo import GROUP_LOSSES, GRPOConfig, default_grpo_config, make_grpo_step
from alignax.rl.nash_md import NashMDConfig, default_nash_md_config, make_nash_md_step
from alignax.rl.ppo import (
    PPOConfig,
    default_ppo_config,
    describe_reward,
    kl_controller_from_config,
    make_ppo_step,
)
from alignax.rl.rollout import RolloutConfig, default_rollout_config
from alignax.rl.xpo import XPOConfig, default_xpo_config, make_xpo_step

__all__ = [
    "GROUP_LOSSES",
    "ONLINE_ALGORITHMS",
    "GRPOConfig",
    "NashMDConfig",
    "PPOConfig",
    "RolloutConfig",
    "XPOConfig",
    "default_grpo_config",
    "default_nash_md_config",
    "default_ppo_config",
    "default_rollout_config",
    "default_xpo_config",
    "describe_reward",
    "kl_controller_from_config",
    "make_grpo_step",
    "make_nash_md_step",
    "make_ppo_step",
    "make_xpo_step",
    "online_step",
]
