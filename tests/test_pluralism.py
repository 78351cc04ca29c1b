"""The pluralism study's annotators, EM steps and analysis on cases whose answers are known, and
its checks before it runs (its end-to-end run: the notebook's fixture, tests/test_notebooks.py)."""

import numpy as np
import pytest

from alignax.analysis.pluralism import (
    aggregate,
    annotate,
    annotator_groups,
    e_step,
    initial_split,
    match_classes,
    pair_log_likelihood,
    selectors,
    standardise,
)
from configs import pluralism as config_module
from experiments import pluralism
from tests.helpers import preset_config


def test_annotators_fall_into_groups_by_their_shares():
    np.testing.assert_array_equal(annotator_groups(10, (0.7, 0.3)), [0] * 7 + [1] * 3)
    with pytest.raises(ValueError, match="must be positive and sum to 1"):
        annotator_groups(10, (0.7, 0.2))
    with pytest.raises(ValueError, match="3 annotators leave a group"):
        annotator_groups(3, (0.9, 0.1))


def test_each_pair_is_labelled_by_its_annotators_group():
    # Group 0 prefers the first response of every pair, group 1 the second, by a wide margin.
    raw = np.stack([np.tile([[5.0, 0.0]], (6, 1)), np.tile([[0.0, 5.0]], (6, 1))])
    annotator = np.array([0, 1, 2, 0, 2, 1])
    groups = np.array([0, 0, 1])
    got = annotate(raw, annotator, groups, scale=0.01, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(got, [1, 1, 0, 1, 0, 1])
    # At a finite scale, Bradley-Terry: P(first) = sigmoid(difference / scale).
    many = annotate(raw[:, :1].repeat(20000, 1), np.zeros(20000, int), groups, 5.0,
                    np.random.default_rng(1))  # fmt: skip
    assert many.mean() == pytest.approx(1 / (1 + np.exp(-1.0)), abs=0.01)


def test_em_steps_follow_bayes_rule():
    margins = np.array([[2.0, -1.0], [-2.0, 1.0]])  # 2 classes x 2 pairs
    labels = np.array([1.0, 0.0])
    loglik = pair_log_likelihood(margins, labels)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(
        loglik, np.log([[sig(2.0), sig(1.0)], [sig(-2.0), sig(-1.0)]]), rtol=1e-12
    )
    # Both pairs by annotator 0; annotator 1 labelled nothing: its posterior is the prior.
    post = e_step(loglik, np.array([0, 0]), 2, np.array([0.7, 0.3]))
    joint = np.array([0.7, 0.3]) * np.exp(loglik.sum(axis=1))
    np.testing.assert_allclose(post[0], joint / joint.sum())
    np.testing.assert_allclose(post[1], [0.7, 0.3])


def test_the_split_starts_the_annotators_the_pooled_model_explains_worst_apart():
    resp = initial_split([0.9, 0.85, 0.88, 0.5, 0.55, 0.86])
    np.testing.assert_array_equal(resp[:, 1], [0, 0, 0, 1, 1, 0])
    # Classes are matched to the groups they hold the most annotators of, in either order.
    assert match_classes(np.array([[0, 1], [0, 1], [1, 0]]), np.array([0, 0, 1])) == ([1, 0], 1.0)
    assert match_classes(resp, np.array([0, 0, 0, 1, 1, 1])) == ([0, 1], pytest.approx(5 / 6))


def test_maxmin_picks_by_the_lower_standardised_score():
    rng = np.random.default_rng(0)
    scores = {
        k: rng.normal(size=(2, 5)) for k in ("pooled", "group0", "group1", "class0", "class1")
    }
    out = selectors(scores, ["a", "b"], class_groups=[1, 0])
    np.testing.assert_allclose(
        out["MaxMin, group models"],
        np.minimum(standardise(scores["group0"]), standardise(scores["group1"])),
    )
    # A class is named by the group it was matched to.
    np.testing.assert_array_equal(out["mixture class of b"], scores["class0"])
    np.testing.assert_array_equal(out["own model, a"], scores["group0"])


def test_differences_at_the_largest_n_are_paired_by_seed():
    names, ns = ["a", "b"], [1, 2]
    selectors_ = ["pooled", "own model, a", "own model, b", "MaxMin, group models",
                  "MaxMin, mixture classes"]  # fmt: skip
    tables = {}
    for seed in range(3):
        curve = lambda v: {"a": [0.0, v], "b": [0.0, v - 1], "worst group": [0.0, v - 1]}  # noqa: E731
        best = {s: curve(i + seed) for i, s in enumerate(selectors_)}
        accuracy = {m: [0.7, 0.6] for m in ("pooled", "group0", "group1", "class0", "class1")}
        tables[str(seed)] = {"best_of_n": best, "assignment": 0.9, "accuracy": accuracy}
    d = aggregate(tables, names, ns)["differences"]
    # pooled (0 + seed) - 1 against b's own model (2 + seed) - 1: -2 in every seed.
    assert d["minority_pooled_minus_own"][0] == pytest.approx(-2.0)
    assert d["worst_maxmin_groups_minus_pooled"][0] == pytest.approx(3.0)
    assert d["control"]["a"][0] == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("population.names", ("a", "b", "c"), r"the study compares two groups"),
        ("population.weights", ((1.0, 2.0), (1.0, 2.0)), r"one weight per principle"),
        (
            "population.principles",
            ("sentiment", "humour", "fluency", "termination"),
            r"unknown principle 'humour'",
        ),
        ("population.shares", (0.5, 0.4), r"must be positive and sum to 1"),
        ("em.rounds", 0, r"em.rounds=0: the mixture needs at least one round"),
    ],  # fmt: skip
)
def test_a_bad_population_is_refused_before_anything_runs(key, value, message, tmp_path):
    config = preset_config(config_module, **{key: value})
    with pytest.raises(ValueError, match=message):
        pluralism.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
