"""evaluate_policy on a tiny random model: its KL, the NLL under a base policy and the diversity
monitor agree with each other on the same samples."""

import jax
import numpy as np
import pytest

from alignax.analysis.policy_eval import (
    distinct_held_out_problems,
    evaluate_policy,
    prompt_texts,
)
from alignax.models import build_model
from alignax.sharding import init_params, make_mesh
from alignax.tasks import get_task
from configs.common import base_config


@pytest.fixture(scope="module")
def setup():
    config = base_config("tiny", task="review")
    model = build_model(config.model, heads=("lm",))
    mesh = make_mesh(config.mesh)
    policy, base = (init_params(model, jax.random.key(k), mesh) for k in (0, 1))
    task = get_task("review")
    prompts = task.prompt_dataset(16, seed=0, split="eval")
    return model, policy, base, task, prompts


def test_nll_under_a_base_policy_and_kl_are_one_identity(setup):
    """On the same samples, KL(policy | base) per sequence = (NLL under base - NLL under the
    policy itself) x length: both come from one set of log-probs."""
    model, policy, base, task, prompts = setup
    rng = jax.random.key(3)

    def run(base_params):
        return evaluate_policy(
            model, policy, task, prompts, rng, max_new_tokens=8,
            ref_params=base, base_params=base_params,
        )  # fmt: skip

    under_base, under_itself = run(base), run(policy)
    np.testing.assert_array_equal(under_base["length"], under_itself["length"])
    expected = (under_base["base_nll"] - under_itself["base_nll"]) * under_base["length"]
    np.testing.assert_allclose(under_base["kl"], expected, rtol=1e-5, atol=1e-5)
    assert (under_base["base_nll"] > 0).all()


def test_diversity_monitor_is_reported_in_range(setup):
    model, policy, _, task, prompts = setup
    result = evaluate_policy(model, policy, task, prompts, jax.random.key(0), max_new_tokens=8)
    assert result["entropy"].shape == (16,) and (result["entropy"] >= 0).all()
    # A random policy's per-token entropy is near the uniform one, log(vocabulary).
    assert result["entropy"].mean() > 0.5 * np.log(model.config.vocab_size)
    for key in ("distinct_1", "distinct_2", "self_bleu"):
        assert 0 <= result[key] <= 1
    assert "base_nll" not in result  # only with base_params
    # Without the monitor: the same samples and scores, none of its four values.
    plain = evaluate_policy(
        model, policy, task, prompts, jax.random.key(0), max_new_tokens=8, monitor=False
    )
    assert not {"entropy", "distinct_1", "distinct_2", "self_bleu"} & set(plain)
    for key in ("length", "ended_with_eos", "gold"):
        np.testing.assert_array_equal(plain[key], result[key])


def test_distinct_held_out_problems_are_distinct_eval_problems_or_refused():
    task = get_task("arithmetic")
    problems = distinct_held_out_problems(task, 20, seed=5)
    texts = prompt_texts(task, problems)
    assert len(texts) == len(set(texts)) == 20
    for text in texts:  # "a+b=" of the eval split, the answer beside it
        a, b = (int(x) for x in text.rstrip("=").replace("-", "+").split("+"))
        op = "-" if "-" in text else "+"
        assert task.problem_split([a, b], [op]) == "eval"
    assert problems["answer"].shape[0] == 20
    # The same draw for the same seed: per-problem results line up across calls.
    assert prompt_texts(task, distinct_held_out_problems(task, 20, seed=5)) == texts
    # The split holds 144 distinct problems: asking for more is refused, naming the count.
    with pytest.raises(ValueError, match="eval.num_problems=600, but only 144"):
        distinct_held_out_problems(task, 600, seed=5)
