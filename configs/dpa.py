"""Directional Preference Alignment on the review task: a Pareto front of policies.

    python -m experiments.dpa --config configs/dpa.py --workdir runs/dpa
    python -m experiments.dpa --config configs/dpa.py:runlocal --workdir runs/dpa_smoke

One command: SFT (from scratch, `sft`, as in configs/rlaif.py) -> pairs of SFT samples to
training prompts -> for each direction theta in `directions` (degrees in the plane of the two
`objectives`), labels from a Bradley-Terry annotator of the directional reward
cos(theta) r_1 / s_1 + sin(theta) r_2 / s_2 (each principle's score r_i standardised by its spread
s_i over the training pairs' responses) -> DPO (`dpo`) from the SFT policy -> each policy's mean
score on both objectives over held-out prompts, means over `seeds` with 95% intervals, and the
front they trace (figures/pareto_front.png).

Pairs the directional reward ties on are dropped (`drop_ties`); the directions are also compared
at one KL to the SFT policy (`matched_kl`), read off each run's kept checkpoints.

default: sentiment against non-repetition (chasing sentiment repeats positive words), 5
directions from 0 to 90 degrees, 2,048 pairs, DPO 300 steps of batch 32 with a checkpoint
every 50, 5 seeds (25 DPO runs).
runlocal: the same pipeline at toy sizes (1-layer model, 512 pairs, directions 0 and 90, one seed,
DPO 4 steps) for the end-to-end test.
"""

import ml_collections

from configs import rlaif


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    small = arg == "runlocal"
    # The SFT stage, the sampling of pairs and DPO as in the RLAIF experiment.
    base = rlaif.feedback_config(arg)
    config = ml_collections.ConfigDict(
        {
            key: base[key]
            for key in base
            if key not in ("judge", "routing", "delta")  # labels come from the directions
        }
    )
    config.objectives = ("sentiment", "non_repetition")
    config.directions = (0.0, 22.5, 45.0, 67.5, 90.0)
    # Temperature of the annotator of the directional reward (in units of the standardised
    # scores: 1 = a one-spread difference is preferred with probability 0.73).
    config.label_temperature = 0.5
    config.eval = ml_collections.ConfigDict({"num_prompts": 256})
    config.seeds = (0, 1, 2, 3, 4)
    # A pair the directional reward cannot order (at 90 degrees: two responses without a
    # repeated bigram) is dropped rather than labelled by a coin flip.
    config.drop_ties = True
    # The directions compared at one KL to the SFT policy (nats, chosen before the run, below
    # every direction's final KL): each direction's scores where its training first reaches it,
    # linear between its checkpoints (`dpo.train.checkpoint_every`, every one kept and scored,
    # its KL measured on the responses scored; the training evaluates only its last step).
    config.matched_kl = 4.0
    config.dpo.train.update(checkpoint_every=50, keep_checkpoints=6)
    if small:
        config.directions = (0.0, 90.0)
        config.eval.num_prompts = 16
        config.seeds = (0,)
        # The toy SFT policy rarely repeats a bigram, so most pairs tie at 90 degrees and leave.
        config.pairs.update(num_pairs=512, num_eval_pairs=64)
        config.matched_kl = 0.05
        config.dpo.train.update(checkpoint_every=2, keep_checkpoints=2)
    config.dpo.train.eval_every = config.dpo.train.steps  # the last step only
    config.lock()
    return config
