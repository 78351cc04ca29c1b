"""InstructGPT / Stiennon et al. curves on the built-in review task.

    python -m experiments.instructgpt --config configs/instructgpt.py --workdir runs/instructgpt
    python -m experiments.instructgpt --config configs/instructgpt.py:runlocal \
        --workdir runs/instructgpt_smoke

Per seed: pretrain -> SFT at every policy width, one reward model on pairs of the sweep width's
SFT samples, then PPO runs: fixed beta in `sweep.fixed_betas`, adaptive KL with the targets
`sweep.kl_targets`, PPO-ptx with gamma in `sweep.ptx_coefs` on `sweep.ptx_base`, and at the
other widths PPO / PPO-ptx for the size axis. Evaluation on held-out prompts (gold reward, win
rate vs SFT, KL) and held-out pretraining text (the alignment tax); criteria A1-A4 and PTX.

default: trimmed from the papers' design to fit 30 minutes on 2 cores (the seeds on `workers`
processes):
  - the beta / target / ptx sweeps (4 + 3 + 5 PPO runs; ptx gamma 0 is the target-4 run) run at
    the middle policy width (d_model 64, the pipeline's tiny policy) over 3 seeds;
  - the size axis (d_model 32 / 64 / 128; base, SFT, PPO and PPO-ptx win rates) runs PPO
    (target 4) and PPO-ptx (gamma `sweep.size_axis_ptx_coef`) only, for the seeds in
    `size_axis_seeds`;
  - PPO runs are short (`stages.ppo.train.steps` iterations of `stages.ppo.train.batch_size`
    prompts) with a higher learning rate than the pipeline's, and the upstream stages have fewer
    steps than the pipeline's;
  - one reward model per seed serves every policy size (as in InstructGPT).
  Wall time: measured in the published run's results block (docs/results/instructgpt.md),
  with the seconds of each stage.
runlocal: the same pipeline at toy sizes for the tests (1 seed, a few steps), at the sweep
width only: a second width would add its own pretrain, SFT and two PPO programs to compile, and
its wiring (each width's stages, the sweep width's reward model) is checked in
tests/test_instructgpt.py without training.
"""

import ml_collections

from alignax.stages import stage_section
from configs import ppo, reward_model, sft
from configs.common import stages_parent_config


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    small = arg == "runlocal"
    config = stages_parent_config()
    config.seeds = (0, 1, 2)
    config.workers = 2  # processes the seeds run on, one core each (1: this one, in order)
    # Policy sizes: config.model at these d_model (head dimension and MLP ratio kept).
    config.widths = (32, 64, 128)
    config.sweep_width = 64  # the width of the beta / target / ptx sweeps and the reward model
    config.size_axis_seeds = (0, 1, 2)  # seeds that also train the other widths
    config.stages = ml_collections.ConfigDict(
        {
            "pretrain": stage_section(sft.get_config("pretrain")),
            "sft": stage_section(sft.get_config("runlocal")),
            "reward_model": stage_section(reward_model.get_config("runlocal"), own=("model",)),
            "ppo": stage_section(ppo.get_config("runlocal")),
        }
    )
    config.sweep = ml_collections.ConfigDict(
        {
            "fixed_betas": (0.0, 0.01, 0.05, 0.2),
            "kl_targets": (2.0, 4.0, 8.0),  # adaptive controller, nats per sequence
            # PPO-ptx gamma on the run `ptx_base`: the 0.5, 2 and 8, and 0.02 and 0.1,
            # added after the first run, where gamma >= 0.5 undid PPO's whole gain over SFT.
            "ptx_coefs": (0.0, 0.02, 0.1, 0.5, 2.0, 8.0),
            "ptx_base": "target4",
            "size_axis_ptx_coef": 0.1,
        }
    )
    config.eval = ml_collections.ConfigDict(
        {
            "num_prompts": 512,
            "max_new_tokens": 32,
            "num_pretraining_texts": 512,
            "num_samples": 3,  # texts of the beta = 0 run shown at start / peak / end
        }
    )
    config.criteria = ml_collections.ConfigDict(
        {
            "kl_tolerance": 0.2,  # A3: |KL / target - 1|
            "kl_warmup_fraction": 0.5,  # A3: rollout KL averaged over the steps after this share
            "min_win_rate": 0.65,  # A4
            "min_tax_cut": 0.5,  # PTX: share of the alignment tax removed
            "max_win_rate_drop": 0.05,  # PTX: for at most this many win-rate points
        }
    )
    st = config.stages
    # Shorter upstream stages than the pipeline's (pretrain 600 steps, RM 4,096 pairs x 400).
    st.pretrain.train.update(steps=300, eval_every=300, checkpoint_every=300)
    st.sft.train.update(steps=200, eval_every=200, checkpoint_every=200)
    st.reward_model.pairs.update(num_pairs=2048, num_eval_pairs=256)
    st.reward_model.train.update(steps=300, eval_every=300, checkpoint_every=300)
    # Short PPO runs: 60 iterations of 32 prompts (0.2 s each on one core, against 0.45 s for
    # 64) at a higher learning rate than the pipeline's. Adaptive KL (A3): the horizon is a
    # fifteenth of the run's samples (beta can move up to x20 over the run), and the initial
    # beta 0.1 lies between the betas that hold 2 nats (~0.4) and 8 nats (~0.04), so every
    # target is reached early; with 0.05 and 192, target 2 ran at 3.7 nats after warm-up.
    st.ppo.train.update(steps=60, batch_size=32, log_every=2, eval_every=10, checkpoint_every=60)
    st.ppo.optimizer.learning_rate = 1e-3
    st.ppo.ppo.update(kl_coef=0.1, kl_horizon=128)
    if small:
        config.seeds = (0,)
        config.workers = 1
        config.size_axis_seeds = (0,)
        config.widths = (64,)
        config.sweep.update(
            fixed_betas=(0.0, 0.2), kl_targets=(4.0,), ptx_coefs=(0.0, 2.0), size_axis_ptx_coef=2.0
        )
        # Every sampling batch is 32 prompts, so each width compiles one sampler (compile time
        # dominates a toy run).
        config.eval.update(num_prompts=32, num_pretraining_texts=64)
        st.pretrain.train.update(steps=20, log_every=10, eval_every=20, checkpoint_every=20)
        st.pretrain.sft.update(num_examples=1024, num_eval_examples=64)
        st.pretrain.eval.num_prompts = 32
        st.sft.train.update(steps=20, log_every=10, eval_every=20, checkpoint_every=20)
        st.sft.sft.update(num_examples=128, num_eval_examples=64)
        st.sft.eval.num_prompts = 32
        st.reward_model.train.update(steps=20, log_every=10, eval_every=20, checkpoint_every=20)
        st.reward_model.pairs.update(num_pairs=256, num_eval_pairs=64)
        st.ppo.train.update(steps=4, log_every=1, eval_every=2, checkpoint_every=4, batch_size=32)
        st.ppo.rollout.num_prompts = 64
        st.ppo.eval.num_prompts = 32
    config.lock()
    return config
