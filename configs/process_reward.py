"""Process reward model on three-step arithmetic solutions of an SFT policy.

    python -m experiments.process_reward --config configs/process_reward.py:runlocal \
        --workdir runs/prm --config.labels.policy_from=runs/sft_arithmetic \
        --config.init_from=runs/sft_arithmetic

The task is the RLVR study's (three chained operations on 0..12 with + - *; the solution writes
out each step), so the policy must be an SFT stage of it: `configs/sft.py:arithmetic` with
`--config.task.num_steps=3 --config.task.max_operand=12 --config.task.operators=+-*`.
runlocal: 2,048 solutions labelled by the step checker, 256 held out, 300 steps of batch 32.
Presets: runlocal | monte_carlo (labels by 8 rollouts from each step) | outcome (an outcome
reward model on the same solutions: the verifier's label at the last step, scored there).
Monte Carlo rollouts start after a prefix of up to `labels.max_new_tokens` tokens, so the model
needs `max_len >= task prompt + 2 * labels.max_new_tokens`.
"""

import ml_collections

from alignax.labels import default_labels_config
from alignax.models.lora import default_lora_config
from configs.common import base_config


def get_config(arg: str = "runlocal") -> ml_collections.ConfigDict:
    if arg not in ("runlocal", "monte_carlo", "outcome"):
        raise ValueError(f"unknown preset {arg!r}; known: runlocal, monte_carlo, outcome")
    config = base_config("tiny", task="arithmetic")
    config.task.update(num_steps=3, max_operand=12, operators="+-*")
    # A solution is at most 23 characters and its EOS.
    config.labels = default_labels_config(max_new_tokens=24)
    config.process = ml_collections.ConfigDict(
        {
            # checker | monte_carlo | outcome (alignax/workflows/process_reward.py)
            "label_source": "checker" if arg == "runlocal" else arg,
            # policy: samples of labels.policy_from | references: the task's solutions, a
            # share corruption_rate of them with one digit of a random step changed
            "solutions": "policy",
            "corruption_rate": 0.5,
            "num_solutions": 2048,  # labelled solutions to training problems
            "num_eval_solutions": 256,  # to held-out problems
            "num_rollouts": 8,  # monte_carlo: rollouts from each step
            # How a solution is scored from its steps: min | product | last.
            "solution_score": "last" if arg == "outcome" else "min",
        }
    )
    config.train.update(steps=300, batch_size=32, log_every=50, eval_every=150)
    config.train.checkpoint_every = 150
    config.optimizer.update(learning_rate=1e-3, warmup_steps=20)
    config.lora = default_lora_config()
    config.lock()
    return config
