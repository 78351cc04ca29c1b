"""Online (iterative) DPO on the built-in review task: each round labels fresh pairs of the
current policy's samples and runs DPO from that policy, which is also the round's reference.

    python -m experiments.sft --config configs/sft.py:runlocal --workdir runs/sft
    python -m experiments.online_dpo --config configs/online_dpo.py --workdir runs/online_dpo \
        --config.init_from=runs/sft

runlocal: tiny model, 3 rounds of 1,024 pairs x 100 DPO steps (batch 32) from the SFT policy;
every round's policy is scored on 256 held-out prompts (gold reward, KL to the SFT policy and to
its round's reference); its time is in the README's Experiments table.
Settings of each round's DPO stage are under `dpo` (e.g.
--config.dpo.loss.hyperparameters.beta=0.2); the model, mesh and task are the experiment's own.
"""

import ml_collections

from alignax.stages import stage_section
from configs import dpo
from configs.common import stages_parent_config


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    if arg != "runlocal":
        raise ValueError(f"unknown preset {arg!r}; known: runlocal")
    config = stages_parent_config(seed=True)
    config.init_from = ""  # workdir of the SFT policy: round 1's start, reference and sampler
    config.rounds = 3
    config.dpo = stage_section(dpo.get_config("runlocal"))
    config.dpo.pairs.update(num_pairs=1024, num_eval_pairs=128)
    config.dpo.eval.num_prompts = 128
    config.dpo.train.update(steps=100, log_every=25, eval_every=100, checkpoint_every=100)
    config.eval = ml_collections.ConfigDict({"num_prompts": 256, "max_new_tokens": 32})
    config.lock()
    return config
