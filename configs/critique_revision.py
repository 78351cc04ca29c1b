"""Critique and revision (Constitutional AI's supervised stage) on the review task.

    python -m experiments.critique_revision --config configs/critique_revision.py \
        --workdir runs/critique_revision
    python -m experiments.critique_revision --config configs/critique_revision.py:runlocal \
        --workdir runs/critique_revision_smoke

One command: SFT (from scratch, `sft`, as in configs/rlaif.py) -> the SFT policy's responses to
`revision.num_examples` training prompts, revised toward `revision.principles`
(alignax/feedback/revision.py) -> SFT from the SFT policy on the revisions, and as the control on
the unrevised originals (`revision.train`) -> RLAIF from each: pairs of that policy's samples
labelled by the AI judge (`judge`, the RLAIF experiment's constitution), DPO (`dpo`) -> gold
reward of every policy on held-out prompts, means over `seeds` with 95% intervals.

default: 2,048 responses revised toward sentiment, non-repetition and termination; the SFT on
them 100 steps of batch 32; 2,048 RLAIF pairs, DPO 300 steps; 3 seeds.
runlocal: toy sizes (1-layer model, 64 responses, SFT and DPO 4 steps, one seed) for the
end-to-end test.
"""

import ml_collections

from configs import rlaif


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    small = arg == "runlocal"
    # SFT, pairs, the judge and DPO as in the RLAIF experiment (its labels at 0% human).
    base = rlaif.feedback_config(arg)
    config = ml_collections.ConfigDict(
        {key: base[key] for key in base if key not in ("routing", "delta")}
    )
    train = base.sft.train.copy_and_resolve_references()
    train.update(steps=100, log_every=20, eval_every=100, checkpoint_every=100)
    config.revision = ml_collections.ConfigDict(
        {
            "principles": ("sentiment", "non_repetition", "termination"),
            "num_examples": 2048,
            "num_eval_examples": 256,
            "train": train,
        }
    )
    config.eval = ml_collections.ConfigDict({"num_prompts": 256})
    if small:
        config.eval.num_prompts = 16
        config.revision.update(num_examples=64, num_eval_examples=16)
        config.revision.train.update(steps=4, batch_size=16, log_every=2, eval_every=4)
        config.revision.train.checkpoint_every = 4
    config.lock()
    return config
