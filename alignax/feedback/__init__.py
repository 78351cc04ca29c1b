"""AI feedback: judges, principles and constitutions, targeted human labels, multi-objective
rewards.

    judges.py      the Judge interface (pairs -> P(a preferred)), reward-model and self-judging
                   policy judges, position bias (injection, measurement, debiasing), ensembles
    principles.py  review-task principles on the gold reward's components, constitutions,
                   vector and direction-weighted (DPA) rewards, constitution judges
    directions.py  DPA: pairs labelled toward a direction of two objectives (ties dropped or
                   not), and the paired step test of the front the directions trace
    routing.py     budgets of gold labels for the least-confident pairs, and the random baseline
    revision.py    critique and revision: responses revised toward a principle (CAI's SL stage)
    drift.py       a learned judge's accuracy on verifiable pairs of on-policy samples, and an
                   alarm when it falls
    runs.py        what the AI-feedback studies share: a judge from its config section, pairs of
                   a policy's samples and their labels, the SFT policy, a DPO run on the pairs
"""

from alignax.feedback.drift import (
    DriftAlarm,
    calibrated_thresholds,
    first_alarm,
    judge_accuracy,
)
from alignax.feedback.judges import (
    Debiased,
    Judge,
    JudgeEnsemble,
    PositionBiased,
    RewardModelJudge,
    SelfJudge,
    encode_pairs,
    hard_labels,
    position_bias,
    swap,
    with_principle,
)
from alignax.feedback.principles import (
    PRINCIPLES,
    Constitution,
    ConstitutionJudge,
    Principle,
    directional_reward,
    gold_constitution,
    principle,
    principle_judge,
    principle_tokens,
    unit_direction,
    vector_reward,
    vector_reward_np,
)
from alignax.feedback.revision import revise
from alignax.feedback.routing import (
    budget_count,
    least_confident,
    merge_labels,
    most_uncertain,
    random_pairs,
)

__all__ = [
    "PRINCIPLES",
    "Constitution",
    "ConstitutionJudge",
    "Debiased",
    "DriftAlarm",
    "Judge",
    "JudgeEnsemble",
    "PositionBiased",
    "Principle",
    "RewardModelJudge",
    "SelfJudge",
    "budget_count",
    "calibrated_thresholds",
    "directional_reward",
    "encode_pairs",
    "first_alarm",
    "gold_constitution",
    "hard_labels",
    "judge_accuracy",
    "least_confident",
    "merge_labels",
    "most_uncertain",
    "position_bias",
    "principle",
    "principle_judge",
    "principle_tokens",
    "revise",
    "random_pairs",
    "swap",
    "unit_direction",
    "vector_reward",
    "vector_reward_np",
    "with_principle",
]
