"""Tasks declare what they provide beyond every task's interface (alignax.tasks.CAPABILITIES),
and a stage that needs a capability asks for it by name: a task without it is refused with a
message naming the capability, what needs it and what the task provides."""

import inspect

import pytest

from alignax.tasks import CAPABILITIES, TASKS, get_task, require
from alignax.workflows import sft
from configs import sft as sft_config
from tests.helpers import preset_config

# The method each capability stands for.
METHODS = {
    "gold_reward": "reward",
    "demonstrations": "sft_dataset",
    "pretraining_text": "pretraining_dataset",
    "generator_comparisons": "comparison_dataset",
    "verified_references": "reference_responses",
    "step_labels": "step_labels",
    "learned_gold": "describe_gold",
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_task_declares_exactly_the_capabilities_it_implements(name):
    task_class = TASKS[name][0]
    assert task_class.capabilities <= set(CAPABILITIES)
    for capability, method in METHODS.items():
        assert (capability in task_class.capabilities) == hasattr(task_class, method), capability
    best_of_n = hasattr(task_class, "sft_dataset") and (
        "num_candidates" in inspect.signature(task_class.sft_dataset).parameters
    )
    assert ("best_of_n_demonstrations" in task_class.capabilities) == best_of_n


def test_a_missing_capability_is_named_with_what_needs_it():
    task = get_task("arithmetic")
    with pytest.raises(
        ValueError,
        match=r"labels.source='generator' needs what the arithmetic task does not provide "
        r"\(generator_comparisons: .*\); it provides "
        r"\['demonstrations', 'gold_reward', 'step_labels', 'verified_references'\]"
        r"\. Label a policy's samples",
    ):
        require(
            task,
            "generator_comparisons",
            by="labels.source='generator'",
            hint="Label a policy's samples",
        )
    require(task, "demonstrations", "verified_references", by="x")  # present: no error
    with pytest.raises(ValueError, match="unknown task capabilities"):
        require(task, "telepathy", by="x")


def test_sft_asks_the_task_for_pretraining_text():
    config = preset_config(sft_config, task_name="arithmetic", **{"sft.data": "pretraining"})
    with pytest.raises(ValueError, match=r"sft.data='pretraining' needs .*pretraining_text"):
        sft.build_data(config, get_task("arithmetic"))
