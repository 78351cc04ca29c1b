"""Reward-model over-optimisation (Gao, Schulman & Hilton 2022) on the built-in review task.

    python -m experiments.overoptimization --config configs/overoptimization.py \
        --workdir runs/overopt
    python -m experiments.overoptimization --config configs/overoptimization.py:runlocal \
        --workdir runs/overopt_smoke

One command: pretrain -> SFT (the initial policy) -> on-policy comparisons labelled by a
simulated annotator of the gold reward -> a sweep of proxy reward models (sizes x data sizes x
clean / noisy labels x seeds, trained as one vmapped compiled run per size) -> best-of-n on one
shared pool of SFT samples for held-out prompts -> PPO at beta = 0 against several proxies (and
one with a KL penalty) -> functional-form fits, criteria B1-B5, figures and results.md.

default: pool 32 prompts x 2,048 samples; proxies d = 4, 8, 16, 32 (4,096 pairs) and
256 / 1,024 / 4,096 / 16,384 pairs (d = 16), clean and 25%-flipped labels, 5 seeds, each proxy
500 steps of 32 pairs (equal steps for every data size: 62 epochs of 256 pairs, 0.98 of
16,384); PPO at beta = 0 against 3 noisy proxies and at beta = 0.05 against one, 5 seeds each
(20 runs), learning rate 1e-4 (low enough that the rise before the fall is resolved), evaluated
at step 0 (measured), 1, 2, 3, 4, 6, 8, 12, 16 and every 10 steps to 120.
runlocal: the same pipeline at toy sizes for the tests (about a minute).
"""

import ml_collections

from alignax.labels import default_labels_config
from alignax.stages import stage_section
from configs import ppo, sft
from configs.common import stages_parent_config


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    small = arg == "runlocal"
    config = stages_parent_config(seed=True)
    # Independent jobs (proxy sizes, pool prompts, PPO runs) run on this many processes, one
    # core each (alignax/parallel.py); 1 runs them in order in this process.
    config.workers = 1 if small else 2
    config.stages = ml_collections.ConfigDict(
        {
            "pretrain": stage_section(sft.get_config("pretrain")),
            "sft": stage_section(sft.get_config("runlocal")),
        }
    )
    # The stages that make the initial policy, in order, each from the previous one's result.
    config.policy_stages = ("sft",) if small else ("pretrain", "sft")
    # Comparisons of the SFT policy's samples; `flip_rate` here is the noisy condition's.
    config.labels = default_labels_config(flip_rate=0.25)
    config.pool = ml_collections.ConfigDict(
        {"num_prompts": 32, "pool_size": 2048, "max_new_tokens": 32, "num_bootstrap": 1000}
    )
    config.proxies = ml_collections.ConfigDict(
        {
            "sizes": (4, 8, 16, 32),  # d_model of the reward models (2 layers, head dim <= 8)
            "size_sweep_pairs": 4096,  # data size of the size sweep
            "data_sizes": (256, 1024, 4096, 16384),
            "data_sweep_size": 16,  # d_model of the data sweep
            "noise": (0.0, 0.25),  # label flip rates
            "seeds": 5,
            "steps": 500,
            "batch_size": 32,
            "learning_rate": 1e-3,
            "weight_decay": 0.01,
        }
    )
    # PPO at beta = 0 against these proxies ("d<size>_n<pairs>_f<flip>"), and one run with a
    # KL penalty against the first (none when 0): is a KL penalty more than early stopping?
    config.rl = ml_collections.ConfigDict(
        {
            "proxies": ("d8_n4096_f0.25", "d16_n4096_f0.25", "d32_n4096_f0.25"),
            "penalty_kl_coef": 0.05,
            # runs per proxy: run s against the proxy of seed s (at most proxies.seeds)
            "seeds": 5,
            "ppo": stage_section(ppo.get_config("runlocal")),
        }
    )
    config.rl.ppo.ppo.update(kl_control="fixed", kl_coef=0.0)
    # A log-spaced start, then every 10 steps: at 1e-4 the policy leaves its start within
    # ~16 steps (KL ~1-2 nats) and gold peaks by ~5 nats against the larger proxies.
    config.rl.ppo.train.update(
        steps=120,
        log_every=5,
        eval_every=10,
        eval_steps=(1, 2, 3, 4, 6, 8, 12, 16),
        checkpoint_every=40,
    )
    config.rl.ppo.eval.num_prompts = 256
    config.rl.ppo.optimizer.learning_rate = 1e-4
    config.rl.ppo.rewards.value_init = "policy"
    if small:
        config.stages.pretrain.train.update(steps=60, log_every=20, eval_every=60)
        config.stages.pretrain.sft.num_examples = 2048
        config.stages.sft.train.update(steps=20, log_every=10, eval_every=20)
        config.stages.sft.sft.num_examples = 256
        config.pool.update(num_prompts=4, pool_size=64, num_bootstrap=100)
        config.proxies.update(
            sizes=(4, 8),
            data_sizes=(128, 256),
            data_sweep_size=4,
            size_sweep_pairs=256,
            seeds=1,
            steps=30,
        )
        config.rl.proxies = ("d4_n256_f0.25",)
        config.rl.seeds = 1
        config.rl.penalty_kl_coef = 0.0  # no penalised run
        config.rl.ppo.train.update(
            steps=4, log_every=2, eval_every=2, eval_steps=(1,), checkpoint_every=4
        )
        config.rl.ppo.rollout.num_prompts = 128
        config.rl.ppo.eval.num_prompts = 32
        config.rl.ppo.train.batch_size = 32
    config.lock()
    return config
