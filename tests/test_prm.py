"""The PRM study's analysis on pools whose answers are known, and its checks before it runs (its
end-to-end run is the notebook's fixture, tests/test_notebooks.py)."""

import numpy as np
import pytest

from alignax.analysis.stats import interval_verdict
from alignax.analysis.verifiers import REWARD_MODELS, aggregate, seed_table
from configs import prm as config_module
from experiments import prm
from tests.helpers import preset_config

NS = [1, 2, 4, 8]


def pool(seed: int, scores: dict) -> dict:
    """Four problems x 8 samples; problem p has p + 1 right samples (answer code 0), the rest
    answer 1 .. 3 (wrong); each reward model's scores from `scores(correct, rng)`."""
    rng = np.random.default_rng(seed)
    correct = np.zeros((4, 8), bool)
    for p in range(4):
        correct[p, rng.permutation(8)[: p + 1]] = True
    answers = np.where(correct, 0, rng.integers(1, 4, size=correct.shape))
    out = {"correct": correct, "sound": correct, "answers": answers, "truth": np.zeros(4, np.int64)}
    for name in REWARD_MODELS:
        out[f"{name}_scores"] = scores[name](correct, rng)
        out |= {f"{name}_{m}": 0.5 for m in ("step_accuracy", "solution_auc", "label")}
    return out


PERFECT = lambda correct, rng: correct + 0.1 * rng.random(correct.shape)  # noqa: E731
BLIND = lambda correct, rng: rng.random(correct.shape)  # noqa: E731
INVERTED = lambda correct, rng: -PERFECT(correct, rng)  # noqa: E731


def test_a_perfect_reward_model_is_the_oracle_and_an_inverted_one_the_worst():
    scores = {"orm": BLIND, "prm_checker": PERFECT, "prm_monte_carlo": INVERTED}
    table = seed_table(pool(0, scores), NS, vote_draws=64, seed=0)
    base = np.mean([(p + 1) / 8 for p in range(4)])
    for n in map(str, NS):
        assert table["prm_checker"][n] == pytest.approx(table["oracle"][n])
        # Ranking the right samples lowest minimises the estimate (the weights rise with rank).
        assert table["prm_monte_carlo"][n] <= table["orm"][n] + 1e-12
    # At n = 1 every selector's pick is one random sample: the policy's accuracy.
    for name in ("oracle", "majority", *REWARD_MODELS):
        assert table[name]["1"] == pytest.approx(base, abs=0.05 if name == "majority" else 1e-9)


def test_differences_are_paired_within_seeds_and_read_by_their_intervals():
    scores = {"orm": BLIND, "prm_checker": PERFECT, "prm_monte_carlo": BLIND}
    tables = {str(s): seed_table(pool(s, scores), NS, vote_draws=32, seed=s) for s in range(5)}
    combined = aggregate(tables, NS, small_n=2)
    mean, half = combined["differences"]["prm_checker - orm"]["8"]
    expected = np.mean([t["prm_checker"]["8"] - t["orm"]["8"] for t in tables.values()])
    assert mean == pytest.approx(expected) and half > 0
    assert mean - half > 0  # the perfect model beats the blind one at n = 8
    assert interval_verdict((mean, half), "PRM beats ORM", "ORM beats PRM") == "PRM beats ORM"
    assert interval_verdict((-mean, half), "PRM beats ORM", "ORM beats PRM") == "ORM beats PRM"
    assert interval_verdict((0.01, 0.02), "a", "b") == "no difference resolved"
    # The widening is the paired change of the gap from n = 2 to the largest n.
    gaps = [
        (t["prm_checker"]["8"] - t["orm"]["8"]) - (t["prm_checker"]["2"] - t["orm"]["2"])
        for t in tables.values()
    ]
    assert combined["widening"]["prm_checker - orm"][0] == pytest.approx(np.mean(gaps))


@pytest.mark.parametrize(
    "key",
    ["eval.max_new_tokens", "stages.sft.eval.max_new_tokens", "stages.orm.labels.max_new_tokens"],
)
def test_too_few_new_tokens_for_the_solutions_is_refused_before_anything_runs(key, tmp_path):
    config = preset_config(config_module, **{key: 5})
    with pytest.raises(ValueError, match=rf"{key}=5: the task's solutions"):
        prm.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_small_n_the_curves_are_not_read_at_is_refused(tmp_path):
    config = preset_config(config_module, **{"eval.small_n": 3})
    with pytest.raises(ValueError, match=r"eval.small_n=3: must be a power of two"):
        prm.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
