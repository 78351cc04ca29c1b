"""RLHF with PPO on the built-in review task.

    python -m experiments.ppo --config configs/ppo.py:runlocal --workdir runs/ppo \
        --config.init_from=runs/sft --config.rewards.reward_model_from=runs/rm

runlocal: tiny policy from the SFT stage, reward model from the reward_model stage, 64 prompts
per iteration, 2 epochs x 2 minibatches, adaptive KL (target 4 nats, horizon 500 samples),
100 iterations; about a minute on 2 CPU cores. Expect the proxy reward to rise while the KL to
the SFT policy settles near its target; the gold reward rises with it until the proxy is
over-optimised.
Presets: runlocal | gold (optimise the gold reward itself: no reward model) | ptx (PPO-ptx) |
arithmetic (the arithmetic task's exact-match verifier as the reward, from an SFT policy of
configs/sft.py:arithmetic, 256 problems an iteration; the same experiment code, the task chosen
by the config).
"""

import ml_collections

from alignax.data.sources import default_data_config
from alignax.models.lora import default_lora_config
from alignax.rl import default_ppo_config, default_rollout_config
from configs.common import base_config, eval_config


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    if arg not in ("runlocal", "gold", "ptx", "arithmetic"):
        raise ValueError(f"unknown preset {arg!r}; known: runlocal, gold, ptx, arithmetic")
    verifier = arg == "arithmetic"
    config = base_config("tiny", task="arithmetic" if verifier else "review")
    # The KL penalty's reference: "" for the policy PPO starts from (`init_from`), or the workdir
    # of another stage, e.g. the SFT stage when PPO continues another PPO run's policy.
    config.reference_from = ""
    config.rewards = ml_collections.ConfigDict(
        {
            # "model": a trained reward model; "gold": the task's own reward
            "source": "gold" if arg in ("gold", "arithmetic") else "model",
            "reward_model_from": "",  # workdir of a reward_model run (source="model")
            # Value model: a separate model from the "reward_model"'s or the "policy"'s
            # backbone, or "shared": a value head on the policy.
            "value_init": "policy" if arg in ("gold", "arithmetic") else "reward_model",
            # An ensemble reward model (reward_model.py:ensemble) and how to combine its members.
            "ensemble_size": 1,
            "ensemble_method": "mean",  # | "min" | "mean_minus_std" | "mean_minus_var"
            "uncertainty_penalty": 1.0,
            # Subtract the reward model's least-squares slope on response length (tokens), fitted
            # on the initial policy's samples where the scores are normalised: a length penalty
            # read off the reward model, not tuned (Singhal et al. 2023).
            "length_debias": False,
        }
    )
    # Judge drift alarm (rewards.source='model'): at every evaluation, pairs of a response of
    # the policy per held-out prompt and either a second one ("samples") or the task's verified
    # reference response ("reference": the arithmetic task's answer); the share of the pairs the
    # gold reward (the verifier) separates that the reward model orders the same way
    # (eval/judge_accuracy); a warning, and the step in the summary, when it is below
    # `min_accuracy` at `patience` evaluations in a row.
    config.judge_drift = ml_collections.ConfigDict(
        {"track": False, "pairs": "samples", "min_accuracy": 0.6, "patience": 2}
    )
    # LoRA adapters on the policy (rank > 0): they train; the SFT policy is base and reference.
    config.lora = default_lora_config()
    # Your data (README, 'Your model and your data'): --config.data.path=file.jsonl
    # --config.data.tokenizer=<checkpoint> [--config.data.verifier=exact|regex|module:function].
    config.data = default_data_config(verifier=True)
    config.rollout = default_rollout_config()
    config.rollout.update(num_prompts=4096, max_new_tokens=32)
    config.eval = eval_config(num_prompts=128)
    config.ppo = default_ppo_config()
    config.ppo.update(
        kl_target=4.0,
        kl_coef=0.05,
        # Samples over which the adaptive controller corrects (K_beta = batch / horizon per
        # iteration; log beta moves at most 0.2 * batch / horizon per iteration). At 2,000, beta
        # could change by at most x1.9 in 100 iterations while the KL passed the target in ~10:
        # target 4 gave a rollout KL of 4.97 after iteration 30 (+24%), 6.3 at its peak; at 500,
        # 4.01 (configs/instructgpt.py, criterion A3).
        kl_horizon=500,
        ptx_coef=0.5 if arg == "ptx" else 0.0,
    )
    config.train.update(steps=100, batch_size=64, log_every=10, eval_every=50, checkpoint_every=25)
    if verifier:  # answers are a few tokens; one nat of KL buys a lot of accuracy
        config.rollout.max_new_tokens = 4
        config.ppo.kl_target = 1.0
        # A 0/1 reward needs many samples per update: with 64 prompts an iteration (minibatches
        # of 32 answers) Adam's steps follow the noise and held-out accuracy falls even against
        # the verifier itself; 256, the samples per step of the GRPO study (configs/rlvr.py).
        config.train.batch_size = 256
    config.optimizer.update(learning_rate=5e-4, warmup_steps=5, schedule="constant")
    config.lock()
    return config
