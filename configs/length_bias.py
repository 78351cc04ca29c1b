"""Length hacking and its controls in best-of-n (Singhal et al. 2023; Park et al. 2024), over seeds.

    python -m experiments.length_bias --config configs/length_bias.py --workdir runs/length_bias
    python -m experiments.length_bias --config configs/length_bias.py:runlocal \
        --workdir runs/length_bias_smoke

Annotators with a known length bias: each prefers by its utility, the task's gold reward plus
`strength` times the response's length z-score (its length in tokens, standardised over the
training responses), Bradley-Terry at `annotator_temperature` in units of gold's spread (the
studies' simulated annotators). Strength 1 weighs one standard deviation of length (~4 tokens) as
much as one of gold. The generator's own gold falls slightly with length (responses that reach
the length cap lose the termination term), so length bought is gold lost.

Per seed, every reward model (the policy's architecture at width `rm.width`, from scratch) in one
vmapped run on the same pairs of generator responses to training prompts: one on gold labels (an
unbiased annotator: the control), and for each strength one on the biased annotator's labels and
one on the same labels fitted beside a length covariate (the Bradley-Terry margin r_1 - r_2 +
c x, x the length z-score difference, c learnt; the model's reward alone is used: a linear length
head in the spirit of ODIN, Chen et al. 2024, without its decorrelation term). The labels of
every annotator come from the same uniform draws, so they differ only where the utilities do.
Then best-of-n on a pool of generator samples to held-out prompts by each model, by the biased
model with its length slope (least squares on the training responses) subtracted post hoc (a
length penalty whose weight is read off the data, not tuned), by the annotator's utility and by
gold.

Criteria, stated before the run (answered in results.md, per strength, from 95% t-intervals
over seeds of paired differences at the largest n):
  (1) Does the biased-label model's score correlate with length more than the gold-label
      model's (within prompts, over the pool)?
  (2) Does best-of-n by the biased-label model reach lower gold than by the gold-label model?
  (3) Does subtracting its length slope post hoc raise its gold?
  (4) Does fitting it beside a length covariate raise its gold?
  (5) Is the length-controlled win rate of its picks against a random pool sample (the biased
      judge's preferences regressed on the length difference and read at 0, as length-controlled
      AlpacaEval) nearer the unbiased judge's win rate than the raw win rate is?

The policy half: per seed pretrain -> SFT (the DPO frontier study's trimmed stages), then DPO
from the SFT policy on pairs of its samples to training prompts labelled by an annotator with
`policies.length_bias` gold units per token (0.25: one unit of gold per ~4 tokens, about one
standard deviation of the generator's lengths: strength 1) and, with the same samples and draws,
by the unbiased annotator (the control); on the biased labels also length-normalised DPO (Park et
al. 2024: per-token log-ratios) and SimPO (Meng et al. 2024). Every run 2 passes over the same
pairs; each method at each beta of `policies.betas` (the same grid for every seed, fixed before
the run; DPO's for the control too; SimPO's gamma 0.5). Every run's policies at the steps of
`policies.checkpoints` (its trajectory, the first inside the learning rate's warm-up) and the
SFT policy answer one fresh draw of held-out prompts with one sampling key: gold, length, KL to
the SFT policy. A method's gold and length at a KL budget are read off the line through its
runs' (KL, gold) and (KL, length) points and the SFT policy's (0, ...), sorted by KL, within a
seed (undefined where the budget lies beyond its largest KL). Criteria, at every budget of
`policies.kl_budgets` (95% t-intervals over the seeds where both are defined, paired):
  (6) Does DPO on the biased labels answer longer than DPO on gold labels at equal KL?
  (7) Does it reach lower gold?
  (8) Do length-normalised DPO and SimPO on the biased labels answer shorter than DPO on them at
      equal KL?
  (9) Do they reach higher gold?
PPO on the same biased labels: a reward model (the DPO frontier study's: 3 passes over the pairs)
trained on exactly the biased DPO runs' pairs and labels, then PPO from the SFT policy against it
(the DPO frontier study's PPO: adaptive KL coefficient steered to 8 nats) plain and with the reward
model's least-squares slope on response length removed where its scores are normalised (PPO's
`rewards.length_debias`: a length penalty read off the reward model, not tuned); each run measured
at the steps of `policies.ppo_checkpoints` on the same fresh draw, read at the same budgets.
Criteria, stated before these runs, at every budget:
  (10) Does PPO against the biased-label reward model answer longer than DPO on those labels?
  (11) Does it reach lower gold?
  (12) Does removing the reward model's length slope make PPO answer shorter?
  (13) Does it raise PPO's gold?
PPO has one setting against DPO's three betas: it is shown at that one.
A first run compared one setting of each (DPO beta 0.1, both relatives beta 2): the relatives
then ran much further from the SFT policy (KL 8.9 and 22 against 4.4), longer and lower in
gold; equal KL is the comparison Park et al.'s claim needs, so this design replaced it. A second
run measured final policies only: no beta brought the relatives below KL 5.4 and 13.7, so their
values at the budgets were mixtures with the SFT policy; measuring every run along its
trajectory (fewer steps: the points at small KL) replaced that, the criteria unchanged.

Nothing was tuned: the reward models' settings are the pluralism study's. default: 6 seeds; its
wall time is in its published results block (docs/results/length_bias.md). runlocal: the same
pipeline at toy sizes for the test (one seed; the pluralism smoke runs two); compile-bound.
"""

import ml_collections

from alignax.losses.registry import default_hyperparameters
from alignax.stages import stage_section
from configs import dpo, ppo, reward_model, sft
from configs.common import (
    pairs_config,
    scratch_reward_models_config,
    shrink_reward_model_and_ppo_stages,
    shrink_rlhf_base_stages,
    stages_parent_config,
)


def _loss(name: str, **hyperparameters) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {"name": name, "hyperparameters": default_hyperparameters(name, **hyperparameters)}
    )


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "runlocal"):
        raise ValueError(f"unknown preset {arg!r}; known: default, runlocal")
    config = stages_parent_config("tiny")
    config.seeds = (0, 1, 2, 3, 4, 5)  # 3 rounds of the 2 workers
    config.workers = 2  # processes the seeds run on, one core each (1: this one, in order)
    config.bias = ml_collections.ConfigDict(
        {
            # The annotators' length biases: utility = gold + strength * (length z-score).
            "strengths": (0.5, 1.0, 2.0),
            "annotator_temperature": 0.5,
        }
    )
    config.rm = scratch_reward_models_config()
    config.pairs = pairs_config(num_pairs=8192, num_eval_pairs=2048)
    # num_references: pool samples per prompt each pick is compared with for the win rates.
    config.pool = ml_collections.ConfigDict(
        {"num_prompts": 32, "pool_size": 512, "num_references": 64}
    )
    config.stages = ml_collections.ConfigDict(
        {
            "pretrain": stage_section(sft.get_config("pretrain")),
            "sft": stage_section(sft.get_config("runlocal")),
            # The template of every DPO run; `policies` sets each run's loss and labels.
            "dpo": stage_section(dpo.get_config("runlocal")),
            # The reward model of the biased DPO runs' pairs and labels, and PPO against it.
            "reward_model": stage_section(reward_model.get_config("runlocal"), own=("model",)),
            "ppo": stage_section(ppo.get_config()),
        }
    )
    # The DPO frontier study's trimmed pretraining and SFT, and its offline runs' passes.
    config.stages.pretrain.train.update(steps=300, eval_every=300)
    config.stages.sft.train.update(steps=150, eval_every=150)
    config.stages.dpo.pairs.update(num_pairs=1024, num_eval_pairs=64)
    config.stages.dpo.preferences.eval_kl_to_initial = True  # SimPO keeps no reference
    config.stages.dpo.train.update(
        steps=64, batch_size=32, log_every=8, eval_every=64, checkpoint_every=8, keep_checkpoints=8
    )
    # The DPO frontier study's reward model (3 passes over the pairs) and PPO.
    config.stages.reward_model.labels = config.stages.dpo.labels.copy_and_resolve_references()
    config.stages.reward_model.pairs.update(num_pairs=1024, num_eval_pairs=256)
    config.stages.reward_model.train.update(steps=96, eval_every=96, checkpoint_every=96)
    config.stages.ppo.rewards.value_init = "policy"
    config.stages.ppo.ppo.update(kl_coef=0.1, kl_target=8.0, kl_horizon=64)
    config.stages.ppo.eval.num_prompts = config.stages.dpo.eval.num_prompts
    config.stages.ppo.train.update(
        steps=32, batch_size=32, log_every=4, eval_every=32, checkpoint_every=2, keep_checkpoints=16
    )
    config.policies = ml_collections.ConfigDict(
        {
            "length_bias": 0.25,  # gold units per response token (alignax.tasks.Annotator)
            # The losses on the biased labels (DPO is also run on gold labels: the control),
            # each at every beta of `betas` (its other hyperparameters from here).
            "losses": ml_collections.ConfigDict(
                {
                    "dpo": dpo.get_config("dpo").loss,
                    "dpo_length_normalized": dpo.get_config("dpo_length_normalized").loss,
                    "simpo": _loss("simpo", beta=2.0, gamma=0.5),
                }
            ),
            "betas": ml_collections.ConfigDict(
                {
                    "dpo": (0.03, 0.1, 0.3),
                    # Per-token log-ratios: SimPO's scale of beta.
                    "dpo_length_normalized": (0.5, 1.0, 2.0),
                    "simpo": (0.5, 1.0, 2.0),
                }
            ),
            "kl_budgets": (1.0, 2.0, 4.0),  # nats: where the methods are compared
            # The steps at which every run's policy is measured: its trajectory, log-spaced;
            # the last is stages.dpo.train.steps (every one a kept checkpoint).
            "checkpoints": (8, 16, 32, 64),
            # The same for every PPO run, the last stages.ppo.train.steps.
            "ppo_checkpoints": (2, 4, 8, 16, 32),
            "num_prompts": 512,  # of the fresh draw every measured policy answers
            "max_new_tokens": 32,
        }
    )
    if arg == "runlocal":
        config.seeds = (0,)
        config.workers = 1
        config.bias.strengths = (1.0,)
        config.rm.update(width=8, steps=10)
        config.pairs.update(num_pairs=128, num_eval_pairs=64)
        config.pool.update(num_prompts=4, pool_size=8, num_references=4)
        shrink_rlhf_base_stages(config.stages)
        config.stages.dpo.pairs.update(num_pairs=64, num_eval_pairs=16)
        config.stages.dpo.eval.num_prompts = 16
        config.stages.dpo.train.update(
            steps=4, batch_size=8, log_every=2, eval_every=4, checkpoint_every=2, keep_checkpoints=2
        )
        config.policies.checkpoints = (2, 4)
        config.stages.reward_model.pairs.num_pairs = 64
        shrink_reward_model_and_ppo_stages(config.stages)
        config.policies.ppo_checkpoints = (2, 4)
        config.policies.num_prompts = 16
        del config.policies.losses["dpo_length_normalized"]  # one relative is enough to test
        del config.policies.betas["dpo_length_normalized"]
        config.policies.betas.update(dpo=(0.1,), simpo=(2.0,))
    config.lock()
    return config
