"""What the studies on three-step arithmetic share (configs/rlvr.py, prm.py, rm_ensembles.py):
the task, the seeds, the SFT stage every one of them starts from and the reward models on its
solutions."""

import ml_collections

from alignax.stages import stage_section
from alignax.tasks import ArithmeticTask
from configs import process_reward, sft
from configs.common import stages_parent_config


def arithmetic_study_config(smoke: bool) -> tuple[ml_collections.ConfigDict, int]:
    """(config, response tokens): the unlocked parent config of a study on three operations on
    operands 0..12 with + - *, six seeds on two worker processes, and its `stages.sft`
    (configs/sft.py:arithmetic for 2,000 steps, answering held-out problems at the length of
    the longest solution and its EOS, the response tokens returned); with `smoke`, one seed
    in this process and SFT at toy sizes, for the tests."""
    config = stages_parent_config("tiny", task="arithmetic")
    config.task.update(num_steps=3, max_operand=12, operators="+-*")
    response_tokens = ArithmeticTask(config.task).answer_len + 1  # the longest solution + EOS
    config.seeds = (0, 1, 2, 3, 4, 5)  # 3 rounds of the 2 workers
    config.workers = 2  # processes the seeds run on, one core each (1: this one, in order)
    config.stages = ml_collections.ConfigDict({"sft": stage_section(sft.get_config("arithmetic"))})
    config.stages.sft.train.update(steps=2000, eval_every=1000)
    config.stages.sft.eval.max_new_tokens = response_tokens
    if smoke:
        config.seeds = (0,)
        config.workers = 1
        config.stages.sft.train.update(steps=60, log_every=20, eval_every=60)
        config.stages.sft.sft.update(num_examples=512, num_eval_examples=64)
        config.stages.sft.eval.num_prompts = 32
    return config, response_tokens


def solution_reward_model(preset: str, response_tokens: int, smoke: bool):
    """A reward model's stage section on the SFT policy's solutions (configs/process_reward.py
    at `preset`): 8,192 solutions of up to `response_tokens` tokens, 1,200 steps; with `smoke`,
    toy sizes for the tests."""
    stage = stage_section(process_reward.get_config(preset))
    stage.labels.max_new_tokens = response_tokens
    stage.process.num_solutions = 8192
    stage.train.update(steps=1200, eval_every=600, checkpoint_every=600)
    if smoke:
        stage.process.update(num_solutions=64, num_eval_solutions=32, num_rollouts=2)
        stage.train.update(steps=4, batch_size=8, log_every=2, eval_every=4, checkpoint_every=4)
    return stage
