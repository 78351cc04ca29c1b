"""Judge drift on arithmetic: a learned judge checked against the verifier while PPO trains on it.

    python -m experiments.judge_drift --config configs/judge_drift.py --workdir runs/judge_drift
    python -m experiments.judge_drift --config configs/judge_drift.py:runlocal \
        --workdir runs/judge_drift_smoke

Per seed: SFT on the arithmetic task's demonstrations (`stages.sft`) -> a reward model (the
judge) on pairs of SFT answers to training problems labelled by a Bradley-Terry annotator of the
exact-match verifier, started from the SFT policy (`stages.reward_model`) -> PPO against the
judge at each fixed KL coefficient in `betas`, and, as the control, PPO against the verifier
itself at the first (`stages.ppo`). At every evaluation of a judge-trained run, the judge's
accuracy on pairs of the policy's answer and the verified answer to held-out problems
(`judge_drift.pairs='reference'`) feeds the drift alarm (alignax/feedback/drift.py).

default: SFT 500 steps, 16,384 comparisons (the judge trained 1,500 steps), PPO 100 iterations of
256 problems evaluated every 10 on 256 held-out problems, betas 0 and 0.1, 3 seeds.
runlocal: the same pipeline at toy sizes for the end-to-end test (1 seed, a few steps).
"""

import ml_collections

from alignax.stages import stage_section
from configs import ppo, reward_model, sft
from configs.common import stages_parent_config


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    config = stages_parent_config("tiny", task="arithmetic")
    config.seeds = (0, 1, 2)
    config.betas = (0.0, 0.1)  # fixed KL coefficients of the judge-trained PPO runs
    config.verifier_control = True  # also PPO against the verifier, at betas[0]
    config.stages = ml_collections.ConfigDict(
        {
            "sft": stage_section(sft.get_config("arithmetic")),
            "reward_model": stage_section(reward_model.get_config("runlocal")),
            "ppo": stage_section(ppo.get_config("arithmetic")),
        }
    )
    st = config.stages
    # Answers are at most answer_len + 1 = 4 tokens; a verified answer is preferred with
    # probability sigmoid(1 / 0.25) = 0.98, a pair of equal correctness is a coin flip.
    st.reward_model.labels.update(max_new_tokens=4, annotator_temperature=0.25)
    st.reward_model.pairs.update(num_pairs=16384, num_eval_pairs=512)
    st.reward_model.train.update(steps=1500, log_every=250, eval_every=1500, checkpoint_every=500)
    st.ppo.rewards.update(source="model", value_init="policy")
    st.ppo.ppo.update(kl_control="fixed")
    st.ppo.judge_drift.update(track=True, pairs="reference", min_accuracy=0.5, patience=2)
    st.ppo.eval.num_prompts = 256
    st.ppo.train.update(steps=100, log_every=10, eval_every=10, checkpoint_every=50)
    if arg == "runlocal":
        config.seeds = (0,)
        st.sft.sft.update(num_examples=512, num_eval_examples=64)
        st.sft.eval.num_prompts = 32
        st.sft.train.update(steps=20, log_every=10, eval_every=20, checkpoint_every=20)
        st.reward_model.pairs.update(num_pairs=256, num_eval_pairs=64)
        st.reward_model.train.update(steps=20, log_every=10, eval_every=20, checkpoint_every=20)
        st.ppo.rollout.num_prompts = 64
        st.ppo.eval.num_prompts = 32
        st.ppo.train.update(steps=4, batch_size=16, log_every=2, eval_every=2, checkpoint_every=4)
    config.lock()
    return config
