"""Every training workflow as a stage of one contract, run by one runner
(alignax/workflows/runner.py).

    from alignax.workflows import STAGES, run_stage
    summary = run_stage(STAGES["dpo"], config, workdir)    # = alignax.workflows.preference.run

Each module builds its stage (`build(config, ctx, **inputs) -> Stage`) and registers its
`KIND`; docs/extending.md shows adding one.
"""

from alignax.workflows import (
    online,
    ppo,
    preference,
    process_reward,
    reward_model,
    sft,
    unpaired,
)
from alignax.workflows.runner import Context, Stage, StageKind, run_stage

STAGES: dict[str, StageKind] = {
    module.KIND.name: module.KIND
    for module in (sft, reward_model, process_reward, preference, unpaired, online, ppo)
}

__all__ = ["STAGES", "Context", "Stage", "StageKind", "run_stage"]
