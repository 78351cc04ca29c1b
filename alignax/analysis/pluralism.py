"""Pluralistic preferences: annotator groups with different gold rewards, and reward models that
pool their labels, condition on the group, or find the groups without being told them (a
latent-class Bradley-Terry mixture fitted by EM over annotators, as MaxMin-RLHF does).

    groups = annotator_groups(num_annotators, shares)    # [A] group of each annotator
    labels = annotate(raw, annotator, groups, scale, rng) # each pair labelled by one annotator
    resp = initial_split(agreement)                       # [A, 2] responsibilities, then EM:
    resp = e_step(loglik_KxN, annotator, num_annotators, prior)

Best-of-n selectors on one pool (each group's gold standardised over the pool): the pooled
model, each group's own model, MaxMin over the group models (the sample whose worst standardised
score is highest), each mixture class, MaxMin over the classes, and MaxMin over the groups' gold
rewards themselves (the per-sample rule's own ceiling).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignax.analysis import plots
from alignax.analysis.best_of_n import best_of_n_estimate
from alignax.analysis.stats import mean_interval


def annotator_groups(num_annotators: int, shares) -> np.ndarray:
    """[A]: the group of each annotator, the first round(share_0 A) in group 0, and so on."""
    shares = np.asarray(shares, np.float64)
    if (shares <= 0).any() or abs(shares.sum() - 1) > 1e-9:
        raise ValueError(f"group shares {shares.tolist()} must be positive and sum to 1")
    bounds = np.round(np.cumsum(shares) * num_annotators).astype(int)
    if len(set(bounds)) < len(bounds) or bounds[0] == 0:
        raise ValueError(
            f"{num_annotators} annotators leave a group of shares {shares.tolist()} empty"
        )
    return np.searchsorted(bounds, np.arange(num_annotators), side="right")


def annotate(raw_GxNx2, annotator_N, groups_A, scale: float, rng: np.random.Generator):
    """[N] float labels (1: the first response preferred): pair i is labelled by annotator
    `annotator_N[i]`, Bradley-Terry on its group's reward difference / `scale`."""
    group = groups_A[annotator_N]
    rows = np.arange(raw_GxNx2.shape[1])
    diff = raw_GxNx2[group, rows, 0] - raw_GxNx2[group, rows, 1]
    return (rng.random(len(diff)) < 1 / (1 + np.exp(-diff / scale))).astype(np.float32)


def pair_log_likelihood(margins_KxN, labels_N) -> np.ndarray:
    """[K, N]: log P(label | class k) under Bradley-Terry on class k's reward margins."""
    m = np.asarray(margins_KxN, np.float64)
    return -np.logaddexp(0.0, -np.where(labels_N > 0.5, m, -m))


def e_step(loglik_KxN, annotator_N, num_annotators: int, prior_K) -> np.ndarray:
    """[A, K]: each annotator's posterior over classes given all of its labels."""
    k = loglik_KxN.shape[0]
    per_annotator = np.zeros((num_annotators, k))
    np.add.at(per_annotator, annotator_N, np.asarray(loglik_KxN).T)
    logits = per_annotator + np.log(np.asarray(prior_K))
    logits -= logits.max(axis=1, keepdims=True)
    post = np.exp(logits)
    return post / post.sum(axis=1, keepdims=True)


def initial_split(agreement_A) -> np.ndarray:
    """[A, 2] hard responsibilities from each annotator's agreement with the pooled model:
    two-means on the agreement rates (class 1: the annotators it explains worst)."""
    a = np.asarray(agreement_A, np.float64)
    low, high = a.min(), a.max()
    for _ in range(100):
        second = np.abs(a - low) < np.abs(a - high)
        if second.all() or not second.any():
            break
        new = a[second].mean(), a[~second].mean()
        if new == (low, high):
            break
        low, high = new
    return np.stack([~second, second], axis=1).astype(np.float64)


def match_classes(resp_AxK, groups_A) -> tuple[list[int], float]:
    """(group of each class, share of annotators whose likeliest class is their group's), over
    the assignments of classes to groups (two of each) that agree with the most annotators."""
    likeliest = resp_AxK.argmax(axis=1)
    options = ([0, 1], [1, 0])
    scores = [np.mean(np.asarray(o)[likeliest] == groups_A) for o in options]
    best = int(np.argmax(scores))
    return list(options[best]), float(scores[best])


def standardise(scores) -> np.ndarray:
    s = np.asarray(scores, np.float64)
    return (s - s.mean()) / max(s.std(), 1e-12)


def selectors(scores: dict[str, np.ndarray], names: list[str], class_groups) -> dict:
    """{selector: [P, S] score} from the reward models' pool scores (`scores`, by model name):
    pooled, each group's model, MaxMin over them, each class (named by its matched group),
    MaxMin over the classes."""
    out = {"pooled": scores["pooled"]}
    for g, name in enumerate(names):
        out[f"own model, {name}"] = scores[f"group{g}"]
    out["MaxMin, group models"] = np.minimum.reduce(
        [standardise(scores[f"group{g}"]) for g in range(len(names))]
    )
    for g, name in enumerate(names):  # in the groups' order, whichever class matched each
        out[f"mixture class of {name}"] = scores[f"class{list(class_groups).index(g)}"]
    out["MaxMin, mixture classes"] = np.minimum.reduce(
        [standardise(scores[f"class{k}"]) for k in range(len(class_groups))]
    )
    return out


def seed_table(measured: dict, names: list[str], ns: list[int]) -> dict:
    """One seed: each selector's best-of-n gold of every group and of the worst group, for each
    n; the mixture's class-to-group match and assignment accuracy; each reward model's accuracy
    against each group's gold labels."""
    class_groups, assignment = match_classes(measured["responsibilities"], measured["groups"])
    pool = {
        name: measured[f"{name}.pool"]
        for name in ("pooled", *[f"group{g}" for g in range(len(names))], "class0", "class1")
    }
    gold = [standardise(measured["pool_gold"][g]) for g in range(len(names))]
    chosen = selectors(pool, names, class_groups)
    # The rule's own ceiling: MaxMin on the groups' gold rewards themselves.
    chosen["MaxMin, gold (oracle)"] = np.minimum.reduce(gold)
    table = {}
    for selector, score in chosen.items():
        per_group = [
            [best_of_n_estimate(score, gold[g], n)["gold"] for n in ns] for g in range(len(names))
        ]
        table[selector] = {
            **{name: per_group[g] for g, name in enumerate(names)},
            "worst group": np.min(per_group, axis=0).tolist(),
        }
    accuracy = {
        model: measured[f"{model}.accuracy"].tolist()
        for model in ("pooled", *[f"group{g}" for g in range(len(names))], "class0", "class1")
    }
    return {
        "best_of_n": table,
        "class_groups": class_groups,
        "assignment": assignment,
        "accuracy": accuracy,
    }


def aggregate(tables: dict[str, dict], names: list[str], ns: list[int]) -> dict:
    """Across seeds: each selector's curves (mean, 95% t half-width) and, at the largest n, the
    paired differences the criteria read; the mixture's assignment accuracy; accuracies."""
    seeds = list(tables.values())
    first = seeds[0]["best_of_n"]
    curves = {
        selector: {
            who: [
                mean_interval([t["best_of_n"][selector][who][i] for t in seeds])
                for i in range(len(ns))
            ]
            for who in first[selector]
        }
        for selector in first
    }

    def at_largest(selector: str, who: str) -> np.ndarray:
        return np.array([t["best_of_n"][selector][who][-1] for t in seeds])

    minority = names[-1]
    differences = {
        "control": {
            name: mean_interval(
                at_largest(f"own model, {name}", name)
                - at_largest(f"own model, {names[1 - g]}", name)
            )
            for g, name in enumerate(names)
        },
        "minority_pooled_minus_own": mean_interval(
            at_largest("pooled", minority) - at_largest(f"own model, {minority}", minority)
        ),
        "worst_maxmin_groups_minus_pooled": mean_interval(
            at_largest("MaxMin, group models", "worst group") - at_largest("pooled", "worst group")
        ),
        "worst_maxmin_classes_minus_pooled": mean_interval(
            at_largest("MaxMin, mixture classes", "worst group")
            - at_largest("pooled", "worst group")
        ),
    }
    models = list(seeds[0]["accuracy"])
    accuracy = {
        model: [mean_interval([t["accuracy"][model][g] for t in seeds]) for g in range(len(names))]
        for model in models
    }
    return {
        "curves": curves,
        "differences": differences,
        "assignment": mean_interval([t["assignment"] for t in seeds]),
        "accuracy": accuracy,
    }


def figure(combined: dict, names: list[str], ns: list[int], num_seeds: int, out_dir: Path):
    """figures/pluralism.{png,pdf}: best-of-n gold of each group and of the worst group against
    n for every selector (mean over seeds, 95% t-intervals)."""
    panels = [*names, "worst group"]
    fig, axes = plots.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6))
    for ax, who in zip(axes, panels, strict=True):
        series = {selector: curves[who] for selector, curves in combined["curves"].items()}
        plots.against_n(ax, ns, series, ylabel=f"gold of {who} (standardised)", title=who)
    axes[0].legend(fontsize=6)
    fig.suptitle(f"Pluralistic preferences: best-of-n by each reward model ({num_seeds} seeds)")
    return plots.save(fig, out_dir / "pluralism")
