"""GRPO / Dr.GRPO / RLOO with the arithmetic task's exact-match verifier (RLVR).

    python -m experiments.sft --config configs/sft.py:arithmetic --workdir runs/arith_sft
    python -m experiments.grpo --config configs/grpo.py:runlocal --workdir runs/grpo \
        --config.init_from=runs/arith_sft

runlocal: tiny model from a briefly SFT-ed arithmetic policy (configs/sft.py:arithmetic), 32
prompts x 8 samples per step, one on-policy update per step, 400 steps; about 3 minutes of one
CPU core. What GRPO does to held-out accuracy, over 3 seeds: the rlvr experiment (README).
Presets: runlocal (GRPO) | dr_grpo (unscaled advantages, constant normaliser) | rloo
(sequence-level REINFORCE, leave-one-out baseline, KL in the reward) | rloo_token (the GRPO
per-token objective with a leave-one-out baseline) | dapo (token-mean aggregation, clip-higher,
no KL) | review (the review task's gold reward, from an SFT policy of configs/sft.py:runlocal;
the same experiment code, the task chosen by the config) | xpo (XPO: one policy and one
reference response per prompt judged by the verifier, DPO on the pair plus an exploration term;
alignax/rl/xpo.py) | nash_md (Nash-MD: the verifier's preference of a policy response over one
from the geometric mixture of policy and reference drives a policy gradient, with a KL term;
alignax/rl/nash_md.py). Other surrogates: --config.grpo.loss=gspo|cispo|sapo.
"""

import ml_collections

from alignax.data.sources import default_data_config
from alignax.models.lora import default_lora_config
from alignax.rl import (
    default_grpo_config,
    default_nash_md_config,
    default_rollout_config,
    default_xpo_config,
)
from configs.common import base_config, eval_config


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    presets = ("runlocal", "dr_grpo", "rloo", "rloo_token", "dapo", "review", "xpo", "nash_md")
    if arg not in presets:
        raise ValueError(f"unknown preset {arg!r}; known: {', '.join(presets)}")
    config = base_config("tiny", task="review" if arg == "review" else "arithmetic")
    config.algorithm = arg if arg in ("xpo", "nash_md") else "grpo"
    config.rollout = default_rollout_config()
    config.rollout.update(num_prompts=4096, max_new_tokens=4, group_size=8)
    config.eval = eval_config(num_prompts=256)
    if arg == "xpo":  # one policy and one reference response per prompt
        config.xpo = default_xpo_config()
        config.rollout.group_size = 1
    elif arg == "nash_md":  # one policy and one mixture response per prompt
        config.nash_md = default_nash_md_config()
        config.rollout.group_size = 1
    else:
        config.grpo = default_grpo_config()
        config.grpo.num_minibatches = 1
    if arg == "dr_grpo":
        config.grpo.update(baseline="dr_grpo", aggregation="max_length")
    elif arg in ("rloo", "rloo_token"):  # rloo: sequence-level REINFORCE; rloo_token: per token
        config.grpo.update(baseline=arg, clip_eps_high=0.2)
    elif arg == "dapo":
        config.grpo.update(aggregation="token_mean", clip_eps_high=0.28, beta=0.0)
    elif arg == "review":  # whole reviews, not answers of a few tokens
        config.rollout.max_new_tokens = 32
    config.train.update(
        steps=400, batch_size=32, log_every=20, eval_every=200, checkpoint_every=100
    )
    config.optimizer.update(learning_rate=3e-4, warmup_steps=5, schedule="constant")
    config.lora = default_lora_config()
    # Your data (README, 'Your model and your data'): --config.data.path=file.jsonl
    # --config.data.tokenizer=<checkpoint> [--config.data.verifier=exact|regex|module:function].
    config.data = default_data_config(verifier=True)
    config.lock()
    return config
