"""Reward-model ensembles against over-optimisation in PPO (Coste et al. 2023), over seeds.

    python -m experiments.rm_ensembles_ppo --config configs/rm_ensembles_ppo.py \
        --workdir runs/ensembles_ppo
    python -m experiments.rm_ensembles_ppo --config configs/rm_ensembles_ppo.py:runlocal \
        --workdir runs/ensembles_ppo_smoke

The PPO half of the ensemble study (its best-of-n half: configs/rm_ensembles.py), in the
over-optimisation study's PPO setting (configs/overoptimization.py: PPO at beta = 0 against a
small reward model of noisy labels, where gold falls while the proxy climbs). Per seed:
pretrain -> SFT (the DPO frontier study's trimmed stages) -> a reward model of width
`reward_width` on pairs of the SFT policy's samples labelled by the gold annotator with a quarter
of the labels flipped (stage reward_model), and an ensemble of `ensemble.size` such models
trained together on the same pairs, each from its own initialisation (stage reward_ensemble) ->
PPO against each of `rewards`: the single model, and the ensemble combined by its members'
mean, their minimum (WCO) and their mean less `ensemble.uwo_penalty` times their variance (UWO),
each member standardised on the SFT policy's samples first (as Coste et al. normalise theirs),
every one at each KL coefficient of `betas` (0, and a small fixed penalty). Every run's policy at
the steps of `measure.checkpoints` and the SFT policy answer one fresh draw of
`measure.num_prompts` held-out prompts with one sampling key: gold, length, KL to the SFT policy
and diversity.

Criteria, stated before the run (answered in results.md from 95% t-intervals over seeds of
paired differences, each combination minus the single model at the same KL coefficient):
(1) gold at the end of the run: higher? (2) gold's fall from its peak over the run (the SFT
policy included) to the end, the peak chosen on half of the fresh prompts and both read on the
other half, both ways: smaller (does the combination remove or delay the turn-over)? (3) the
peak, read the same way: what does the combination cost in peak gold? (4) gold at equal KL,
each run's line through its measured policies read at `measure.kl_budgets`: higher?

Nothing was tuned: the PPO settings are the over-optimisation study's (learning rate 1e-4,
fixed KL coefficient), its penalised run's 0.05, and `uwo_penalty` 0.5 is the best-of-n half's.
default: 6 seeds; its wall time is in its published results block
(docs/results/rm_ensembles_ppo.md). runlocal: the same pipeline at toy sizes for the test (one
seed; the pluralism smoke runs two); compile-bound.
"""

import ml_collections

from configs.overoptimized_ppo import overoptimized_ppo_config


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    config = overoptimized_ppo_config(smoke=arg == "runlocal")
    config.ensemble = ml_collections.ConfigDict(
        {
            "size": 4,  # members of stage reward_ensemble, trained in one stacked step
            "uwo_penalty": 0.5,  # UWO: mean - uwo_penalty * variance of the standardised scores
        }
    )
    # What PPO optimises: the single model (stage reward_model), and the ensemble's (the same
    # with reward.ensemble_size) mean, worst case (WCO) and uncertainty-weighted combination
    # (UWO); each at every fixed KL coefficient of `betas`.
    config.rewards = ("single", "mean", "wco", "uwo")
    config.betas = (0.0, 0.05)
    if arg == "runlocal":
        config.ensemble.size = 2
        config.rewards = ("single", "wco")
        config.betas = (0.0,)
    config.lock()
    return config
