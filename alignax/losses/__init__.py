"""Pure preference-learning objectives: `(inputs..., *, hyperparameters) -> (loss_B, metrics)`.

Reward models (reward.py), the offline pairwise DPO family (dpo.py, with a registry so a trainer
calls every member the same way), KTO (kto.py), PPO (ppo.py) and GRPO (grpo.py). Advantages, KL
estimators and KL controllers live in `alignax.advantages` and `alignax.kl_control`.
"""

from alignax.losses.dpo import (
    PreferenceLogps,
    aot_loss,
    aot_unpaired_loss,
    apo_down_loss,
    apo_zero_loss,
    bco_pair_loss,
    cpo_loss,
    discopop_loss,
    dpo_loss,
    exo_loss,
    hinge_loss,
    ipo_loss,
    length_normalized_dpo_loss,
    nca_loss,
    orpo_loss,
    reference_free_dpo_loss,
    robust_dpo_loss,
    rpo_loss,
    simpo_loss,
    sppo_hard_loss,
)
from alignax.losses.grpo import grpo_loss
from alignax.losses.kto import kto_loss
from alignax.losses.ppo import (
    AGGREGATIONS,
    aggregate_tokens,
    ppo_loss,
    ppo_policy_loss,
    ppo_value_loss,
)
from alignax.losses.registry import (
    PREFERENCE_LOSSES,
    REFERENCE_FREE_LOSSES,
    get_preference_loss,
    validate_hyperparameters,
)
from alignax.losses.reward import (
    ENSEMBLE_METHODS,
    bradley_terry_loss,
    ensemble_rewards,
    normalize_rewards,
    pairwise_ranking_loss,
    plackett_luce_loss,
    reward_normalization,
)

__all__ = [
    "grpo_loss",
    "kto_loss",
    "AGGREGATIONS",
    "ENSEMBLE_METHODS",
    "PREFERENCE_LOSSES",
    "PreferenceLogps",
    "REFERENCE_FREE_LOSSES",
    "aggregate_tokens",
    "aot_loss",
    "aot_unpaired_loss",
    "apo_down_loss",
    "apo_zero_loss",
    "bco_pair_loss",
    "bradley_terry_loss",
    "cpo_loss",
    "discopop_loss",
    "dpo_loss",
    "ensemble_rewards",
    "exo_loss",
    "get_preference_loss",
    "hinge_loss",
    "ipo_loss",
    "length_normalized_dpo_loss",
    "nca_loss",
    "normalize_rewards",
    "orpo_loss",
    "pairwise_ranking_loss",
    "plackett_luce_loss",
    "ppo_loss",
    "ppo_policy_loss",
    "ppo_value_loss",
    "reference_free_dpo_loss",
    "reward_normalization",
    "robust_dpo_loss",
    "rpo_loss",
    "simpo_loss",
    "sppo_hard_loss",
    "validate_hyperparameters",
]
