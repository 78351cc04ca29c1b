"""The RLVR study's checks before it runs (its end-to-end run is the notebook's fixture,
tests/test_notebooks.py)."""

import pytest

from configs import rlvr as config_module
from experiments import rlvr
from tests.helpers import preset_config


@pytest.mark.parametrize(
    "key",
    ["eval.max_new_tokens", "stages.sft.eval.max_new_tokens", "stages.grpo.rollout.max_new_tokens"],
)
def test_too_few_new_tokens_for_the_solutions_is_refused_before_anything_runs(key, tmp_path):
    """A cap shorter than the longest solution + EOS would cut right answers off and count them
    wrong: refused, naming the key, with nothing written."""
    config = preset_config(config_module, **{key: 5})
    with pytest.raises(
        ValueError, match=rf"{key}=5: the task's solutions \(.*\) take up to 24 tokens"
    ):
        rlvr.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
