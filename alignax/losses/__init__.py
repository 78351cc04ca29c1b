"""Pure preference-learning objectives: `(inputs..., *, hyperparameters) -> (loss_B, metrics)`.

Reward models (reward.py), the offline pairwise losses (their shared inputs, notation and
metrics in pairwise.py; by family: dpo.py, regression.py, reference_free.py,
dpo_extensions.py) and the unpaired losses (kto.py), registered by decorator (spec.py) so a
trainer calls every member the same way (registry.py; `python -m alignax.losses` prints the
table), PPO (ppo.py), the group policy-gradient family GRPO / GSPO / CISPO / SAPO / RLOO
(grpo.py) and the online pairwise losses XPO and Nash-MD (online.py). Advantages, KL
estimators and KL controllers live in `alignax.rl` (advantages.py, kl_control.py).
"""

from alignax.losses.dpo import (
    aot_loss,
    aot_unpaired_loss,
    bco_pair_loss,
    discopop_loss,
    dpo_loss,
    exo_loss,
    length_normalized_dpo_loss,
    nca_loss,
    reference_free_dpo_loss,
    robust_dpo_loss,
    rpo_loss,
)
from alignax.losses.dpo_extensions import (
    alphapo_loss,
    f_dpo_loss,
    ld_dpo_loss,
    mpo_loss,
    sft_loss,
    wpo_loss,
    wpo_weights,
)
from alignax.losses.grpo import (
    cispo_loss,
    grpo_loss,
    gspo_loss,
    rloo_loss,
    sapo_loss,
)
from alignax.losses.kto import (
    UnpairedLogps,
    apo_zero_unpaired_loss,
    bco_density_ratio,
    bco_loss,
    kto_loss,
)
from alignax.losses.online import nash_md_loss, xpo_loss
from alignax.losses.pairwise import PreferenceLogps, chosen_nll
from alignax.losses.ppo import (
    AGGREGATIONS,
    aggregate_tokens,
    ppo_loss,
    ppo_policy_loss,
    ppo_value_loss,
)
from alignax.losses.reference_free import cpo_loss, orpo_loss, simpo_loss
from alignax.losses.registry import (
    PREFERENCE_LOSSES,
    REFERENCE_FREE_LOSSES,
    UNPAIRED_LOSSES,
    get_preference_loss,
    get_spec,
    get_unpaired_loss,
    validate_hyperparameters,
    weighted_preference_loss,
)
from alignax.losses.regression import (
    apo_down_loss,
    apo_zero_loss,
    hinge_loss,
    ipo_loss,
    length_normalized_ipo_loss,
    sppo_hard_loss,
)
from alignax.losses.reward import (
    ENSEMBLE_METHODS,
    SOLUTION_SCORES,
    bradley_terry_loss,
    confidence_bradley_terry_loss,
    ensemble_rewards,
    normalize_rewards,
    pairwise_ranking_loss,
    plackett_luce_loss,
    process_reward_loss,
    reward_normalization,
    solution_scores,
)

__all__ = [
    "AGGREGATIONS",
    "ENSEMBLE_METHODS",
    "PREFERENCE_LOSSES",
    "PreferenceLogps",
    "REFERENCE_FREE_LOSSES",
    "SOLUTION_SCORES",
    "UNPAIRED_LOSSES",
    "UnpairedLogps",
    "aggregate_tokens",
    "alphapo_loss",
    "aot_loss",
    "aot_unpaired_loss",
    "apo_down_loss",
    "apo_zero_loss",
    "apo_zero_unpaired_loss",
    "bco_density_ratio",
    "bco_loss",
    "bco_pair_loss",
    "bradley_terry_loss",
    "confidence_bradley_terry_loss",
    "chosen_nll",
    "cispo_loss",
    "cpo_loss",
    "discopop_loss",
    "dpo_loss",
    "ensemble_rewards",
    "exo_loss",
    "f_dpo_loss",
    "get_preference_loss",
    "get_spec",
    "get_unpaired_loss",
    "grpo_loss",
    "gspo_loss",
    "hinge_loss",
    "ipo_loss",
    "kto_loss",
    "ld_dpo_loss",
    "length_normalized_dpo_loss",
    "length_normalized_ipo_loss",
    "mpo_loss",
    "nash_md_loss",
    "nca_loss",
    "normalize_rewards",
    "orpo_loss",
    "pairwise_ranking_loss",
    "plackett_luce_loss",
    "ppo_loss",
    "ppo_policy_loss",
    "ppo_value_loss",
    "process_reward_loss",
    "reference_free_dpo_loss",
    "reward_normalization",
    "rloo_loss",
    "robust_dpo_loss",
    "rpo_loss",
    "sapo_loss",
    "sft_loss",
    "simpo_loss",
    "solution_scores",
    "sppo_hard_loss",
    "validate_hyperparameters",
    "weighted_preference_loss",
    "wpo_loss",
    "wpo_weights",
    "xpo_loss",
]
