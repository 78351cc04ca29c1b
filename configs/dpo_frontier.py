"""The DPO reward-KL frontier (Rafailov et al. 2023, Fig. 2) and direct-alignment
over-optimisation (Rafailov et al. 2024) on the built-in review task.

    python -m experiments.dpo_frontier --config configs/dpo_frontier.py --workdir runs/dpo_frontier
    python -m experiments.dpo_frontier --config configs/dpo_frontier.py:runlocal \
        --workdir runs/dpo_frontier_smoke

Per seed: pretrain -> SFT -> reward model (the pipeline's stages, `stages.*`); DPO at each beta of
`dpo_betas`, the `variants` (IPO, cDPO, SimPO, ORPO, preferred-FT) and KTO on one set of pairs of
SFT samples, all from the `offline` template (KTO: `kto`, matched to it); PPO at each KL target
of `rl.kl_targets` against the reward model and against gold (`rl.ppo`); and DPO at
`overoptimization.beta` for `overoptimization.steps` (several epochs), whose first
`offline.train.steps` steps are that beta's frontier run. Every run evaluates gold and KL to SFT
every `train.eval_every` steps on held-out prompts; frontiers are read at `budgets` (nats), from
all runs of a method and again at an equal tuning budget (`equal_budget`: one run per method).

default (5 seeds on `workers` = 2 processes) is trimmed to fit 30 minutes on 2 CPU cores.
Trimmed, against the papers and the pipeline's stages: pretraining 300 and SFT 150 steps (half
the pipeline's); 1,024 pairs, which the reward model also learns from (96 steps, 3 epochs);
every offline run 64 steps of batch 32 (2 epochs; KTO 64 steps of batch 64 over its 2,048
examples), one hyperparameter setting per variant (DPO: 5 betas), one optimizer for all; PPO 30
iterations of 32 prompts at KL targets 2 and 8 only; evaluations every 8 steps (PPO: 3
iterations) on 128 held-out prompts, one sample each; the over-optimisation run 192 steps (6
epochs), its peak and last policy evaluated again on 512 prompts. Seeds run two side by side;
later ones read the programs the first compiled from <workdir>/xla_cache; the wall time of each
stage is in the published run's results block (docs/results/dpo_frontier.md).
runlocal: the same experiment at toy sizes (one seed; one DPO beta, SimPO as the only variant,
one KL target) for the end-to-end test.
"""

import ml_collections

from alignax.losses.registry import default_hyperparameters
from alignax.stages import stage_section
from configs import dpo, kto, ppo, reward_model, sft
from configs.common import shrink_rlhf_base_stages, stages_parent_config


def _loss(label: str, name: str, **hyperparameters) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "label": label,
            "loss": {
                "name": name,
                "hyperparameters": default_hyperparameters(name, **hyperparameters),
            },
        }
    )


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    small = arg == "runlocal"
    config = stages_parent_config()
    config.seeds = (0,) if small else (0, 1, 2, 3, 4)
    # A frontier dominates another when it is no worse than this much gold at every budget and
    # better at one (alignax.analysis.frontier.dominance); about two SEs of one evaluation.
    config.non_inferiority_margin = 0.1
    config.workers = 1 if small else 2  # processes the seeds run on, one core each
    config.stages = ml_collections.ConfigDict(
        {
            "pretrain": stage_section(sft.get_config("pretrain")),
            "sft": stage_section(sft.get_config("runlocal")),
            "reward_model": stage_section(reward_model.get_config("runlocal"), own=("model",)),
        }
    )
    # Half the pipeline's pretraining and SFT steps (trimmed to fit the budget).
    config.stages.pretrain.train.update(steps=300, eval_every=300)
    config.stages.sft.train.update(steps=150, eval_every=150)
    # KL budgets (nats) at which the frontiers are compared.
    config.budgets = (1.0, 2.0, 4.0, 8.0)

    # ---- offline runs: one template; the loss is set per run.
    # 1,024 pairs, batch 32: 32 steps an epoch; every offline run 2 epochs, evaluated every 8 steps.
    num_pairs, batch_size, steps, eval_every, eval_prompts = 1024, 32, 64, 8, 128
    config.offline = stage_section(dpo.get_config("runlocal"))
    config.offline.pairs.update(num_pairs=num_pairs, num_eval_pairs=64)
    # SimPO, ORPO, preferred-FT keep no reference of their own.
    config.offline.preferences.eval_kl_to_initial = True
    config.offline.eval.num_prompts = eval_prompts
    # Every evaluated checkpoint is kept (the over-optimisation run's too: 3 x steps), to
    # measure the frontier vertices and the peak again on fresh prompts.
    config.offline.train.update(
        steps=steps,
        batch_size=batch_size,
        log_every=eval_every,
        eval_every=eval_every,
        checkpoint_every=eval_every,
        keep_checkpoints=3 * steps // eval_every + 1,
    )
    config.dpo_betas = (0.05, 0.1, 0.5, 1.0, 5.0)
    config.variants = ml_collections.ConfigDict(
        {
            "ipo": _loss("IPO", "ipo", beta=0.1),
            "cdpo": _loss("cDPO", "dpo", beta=0.1, label_smoothing=0.2),
            "simpo": _loss("SimPO", "simpo", beta=2.0, gamma=0.5),
            "orpo": _loss("ORPO", "orpo", beta=0.1),
            "preferred_ft": _loss("preferred-FT", "sft"),
        }
    )
    # KTO on the same pairs, each split into a desirable and an undesirable example: twice the
    # examples at twice the batch, so the same sequences per step and the same passes.
    config.kto = stage_section(kto.get_config("runlocal"))
    config.kto.pairs.update(num_pairs=num_pairs, num_eval_pairs=64)
    config.kto.eval.num_prompts = eval_prompts
    config.kto.train.update(
        steps=steps,
        batch_size=2 * batch_size,
        log_every=eval_every,
        eval_every=eval_every,
        checkpoint_every=eval_every,
        keep_checkpoints=steps // eval_every + 1,
    )
    config.kto.optimizer = config.offline.optimizer.copy_and_resolve_references()

    # Every method compared again at an equal tuning budget: one setting each, fixed before the
    # run (DPO's beta and PPO's KL target here; every other method has one setting).
    config.equal_budget = ml_collections.ConfigDict({"dpo_beta": 0.1, "ppo_kl_target": 8.0})

    # ---- PPO: adaptive KL coefficient steered to each target, reward model or gold.
    config.rl = ml_collections.ConfigDict(
        {
            "kl_targets": (2.0, 8.0),
            "reward_sources": ("model", "gold"),
            "ppo": stage_section(ppo.get_config()),
        }
    )
    config.rl.ppo.rewards.value_init = "policy"  # the same value model for both reward sources
    # A horizon of two iterations' samples: the coefficient moves up to 10% an iteration, so it
    # can steer the KL to its target within a short run.
    config.rl.ppo.ppo.update(kl_coef=0.1, kl_horizon=64)
    config.rl.ppo.eval.num_prompts = eval_prompts
    config.rl.ppo.train.update(
        steps=30, batch_size=32, log_every=3, eval_every=3, checkpoint_every=3, keep_checkpoints=11
    )
    # The reward model learns from the very pairs the offline methods learn from (same seed,
    # number and annotator: labels.comparisons draws the same ones), 3 epochs.
    config.stages.reward_model.pairs.update(num_pairs=num_pairs, num_eval_pairs=256)
    config.stages.reward_model.train.update(steps=96, eval_every=96, checkpoint_every=96)

    # ---- over-optimisation: one beta for several epochs over the same pairs.
    config.overoptimization = ml_collections.ConfigDict(
        {"beta": 0.1, "steps": 3 * steps, "num_prompts": 512}  # 6 epochs
    )

    if small:
        shrink_rlhf_base_stages(config.stages)
        config.budgets = (0.5, 1.0)
        num_pairs, batch_size, steps, eval_every, eval_prompts = 64, 16, 8, 4, 16
        config.stages.reward_model.pairs.update(num_pairs=num_pairs, num_eval_pairs=32)
        config.stages.reward_model.train.update(
            steps=8, log_every=4, eval_every=8, checkpoint_every=8
        )
        for section in (config.offline, config.kto):
            section.pairs.update(num_pairs=num_pairs, num_eval_pairs=16)
        for section in (config.offline, config.kto, config.rl.ppo):
            section.eval.num_prompts = eval_prompts
        for section, batch in ((config.offline, batch_size), (config.kto, 2 * batch_size)):
            section.train.update(
                steps=steps,
                batch_size=batch,
                log_every=eval_every,
                eval_every=eval_every,
                checkpoint_every=eval_every,
                keep_checkpoints=2 * steps // eval_every + 1,
            )
        config.dpo_betas = (0.1,)
        config.variants = ml_collections.ConfigDict({"simpo": config.variants.simpo})
        config.rl.kl_targets = (2.0,)
        config.equal_budget.ppo_kl_target = 2.0
        config.rl.ppo.rollout.num_prompts = 32
        config.rl.ppo.train.update(
            steps=4, batch_size=16, log_every=2, eval_every=2, checkpoint_every=2
        )
        config.overoptimization.update(steps=2 * steps, num_prompts=32)
    config.lock()
    return config
