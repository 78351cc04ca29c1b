"""RLAIF with targeted human feedback on the built-in review task.

    python -m experiments.rlaif --config configs/rlaif.py --workdir runs/rlaif
    python -m experiments.rlaif --config configs/rlaif.py:runlocal --workdir runs/rlaif_smoke

One command: SFT (from scratch, `sft`) -> pairs of SFT samples to training prompts -> labels
from the AI judge (`judge`), with `routing.budgets` % of the pairs (those the judge is least
sure of) relabelled by the simulated human annotator of the gold reward (`labels`), and the same
budgets spent on random pairs -> DPO (`dpo`) from the SFT policy on each labelling -> judge-gold
agreement and the downstream gold reward, per budget, over `seeds`, in results.md.

default: 2,048 pairs; budgets 0, 2, 5, 10, 25, 100 %, targeted and random; 5 seeds; DPO 300
steps of batch 32 per condition (50 DPO runs), and delta learning against a weak SFT of 30 steps
(5 more). The judge is a misspecified constitution: it weighs sentiment, repetition and
termination like gold but ignores fluency; its labels are drawn from its probabilities, as the
human's are from the gold annotator's.
runlocal: the same pipeline at toy sizes (1-layer model, 64 pairs, budgets 0, 25, 100 %, one
seed, DPO 4 steps) for the end-to-end test, nearly all of it compiling.
"""

import ml_collections

from alignax.labels import default_labels_config
from alignax.stages import stage_section
from configs import dpo, sft
from configs.common import stages_parent_config

JUDGES = ("constitution", "principle_ensemble", "self", "reward_model")


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    config = feedback_config(arg)
    # Matched label noise: the judge's labels are drawn from its P(a > b), as the human's are
    # from the gold annotator's (a judge's argmax labels would be noise-free where the human's
    # are not).
    config.judge.sample_labels = True
    config.routing = ml_collections.ConfigDict(
        {
            "by": "confidence",  # | "disagreement" (principle_ensemble only)
            "budgets": (0, 2, 5, 10, 25, 100),  # % of pairs relabelled by the human annotator
            "random_baseline": True,  # the same budgets on random pairs
        }
    )
    # Delta learning: pairs of an SFT and a weak policy's samples (the SFT recipe stopped after
    # `weak_sft_steps`; 0: no delta-learning run), the SFT sample chosen without a label.
    config.delta = ml_collections.ConfigDict({"weak_sft_steps": 30})
    if arg == "runlocal":
        config.routing.budgets = (0, 25, 100)
        config.delta.weak_sft_steps = 2
    else:
        config.seeds = (0, 1, 2, 3, 4)
    config.lock()
    return config


def feedback_config(arg: str) -> ml_collections.ConfigDict:
    """What the AI-feedback studies share (unlocked): the SFT stage, the simulated human, the
    pairs, the judge (its argmax labels), DPO and three seeds."""
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    small = arg == "runlocal"
    config = stages_parent_config(seed=True)
    # The SFT stage (from scratch) whose samples are labelled and from which DPO starts.
    config.sft = stage_section(sft.get_config("runlocal"))
    # The simulated human: a Bradley-Terry annotator of the gold reward. `policy_from`: an SFT
    # workdir to use instead of training `sft` here; `temperature`, `max_new_tokens`: sampling
    # of the compared responses.
    config.labels = default_labels_config()
    config.pairs = ml_collections.ConfigDict({"num_pairs": 2048, "num_eval_pairs": 256})
    config.judge = ml_collections.ConfigDict(
        {
            # constitution: sigmoid of the weighted principle-score difference / temperature;
            # principle_ensemble: one judge per principle, averaged with `weights` (its
            # disagreement can route); self: the SFT policy's own verdict likelihood, cued by
            # the principles' words; reward_model: the stage in `reward_model_from`.
            "kind": "constitution",
            "principles": ("sentiment", "non_repetition", "termination"),
            "weights": (1.0, 2.0, 2.0),
            "temperature": 1.0,
            "self_contrastive": True,  # self judge: subtract the uncued likelihood
            "reward_model_from": "",
            "position_bias": 0.0,  # injected logit bias towards the first-shown response
            "debias": "none",  # | "probability" | "logit": average both orders
            # Labels drawn from P(a > b) (True) or its argmax (False).
            "sample_labels": False,
        }
    )
    config.seeds = (0, 1, 2)
    config.dpo = stage_section(dpo.get_config("runlocal"))
    config.dpo.eval.num_prompts = 256
    config.dpo.train.update(log_every=50, eval_every=300, checkpoint_every=300)
    if small:
        # One layer: the run is compile-bound, and compile time grows with depth.
        config.model.num_layers = 1
        config.sft.train.update(steps=20, batch_size=16, log_every=10, eval_every=20)
        # Every sampler call has 16 prompts and 24 new tokens: one compiled shape.
        config.sft.sft.update(num_examples=128, num_eval_examples=16)
        config.sft.eval.update(num_prompts=16, max_new_tokens=24)
        config.labels.max_new_tokens = 24
        config.pairs.update(num_pairs=64, num_eval_pairs=8)
        config.seeds = (0,)
        config.dpo.train.update(
            steps=4, batch_size=16, log_every=2, eval_every=4, checkpoint_every=4
        )
        config.dpo.eval.update(num_prompts=16, max_new_tokens=24)
    return config
