"""Length hacking: how much of a reward model's and a policy's gain is length, and its controls.

An annotator with a known length bias prefers by its utility gold + strength x (length z-score);
a reward model trained on its labels learns the bias, and best-of-n by that model buys length.
The study's quantities, per selector (a score of every pool sample) and n:
  - gold and length of the pick, and its gold beyond its length (its gold less the mean gold of
    the pool's responses of the same length: gold at matched length);
  - the share of the selector's gain that length explains (its pool slope on length times the
    pick's extra length, over the pick's extra score);
  - win rates against a random pool sample: by the biased judge (raw), by the same judge with
    the length difference regressed out (length-controlled, as length-controlled AlpacaEval:
    a logistic regression of the judge's preference on the length difference, read at 0), and
    by the unbiased judge (gold at the same temperature): the truth the other two estimate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignax.analysis import plots
from alignax.analysis.best_of_n import pick_probabilities
from alignax.analysis.report import table
from alignax.analysis.stats import (
    interval_text,
    least_squares_slope,
    mean_interval,
)


def sigmoid(x) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def annotate(utility_Nx2, uniform_N, temperature: float) -> np.ndarray:
    """[N] float labels (1: the first response preferred), Bradley-Terry on the utility
    difference / `temperature`; `uniform_N` the draws (shared across annotators, so that labels
    differ only where their utilities do)."""
    u = np.asarray(utility_Nx2, np.float64)
    return (uniform_N < sigmoid((u[:, 0] - u[:, 1]) / temperature)).astype(np.float32)


def length_correlation(scores_PxS, lengths_PxS) -> float:
    """Pearson correlation of score and length within prompts (each centred per prompt)."""
    s = np.asarray(scores_PxS, np.float64)
    x = np.asarray(lengths_PxS, np.float64)
    s = s - s.mean(axis=1, keepdims=True)
    x = x - x.mean(axis=1, keepdims=True)
    return float((s * x).sum() / max(np.sqrt((s * s).sum() * (x * x).sum()), 1e-12))


def gold_beyond_length(gold_PxS, lengths_PxS) -> np.ndarray:
    """[P, S]: each sample's gold less the mean gold of the pool's samples of its length."""
    gold = np.asarray(gold_PxS, np.float64)
    _, which = np.unique(np.asarray(lengths_PxS), return_inverse=True)
    which = which.reshape(gold.shape)
    means = np.bincount(which.ravel(), gold.ravel()) / np.bincount(which.ravel())
    return gold - means[which]


def logistic_intercept(y, x, w, iterations: int = 50) -> float:
    """sigmoid(a) of the weighted logistic regression of soft labels `y` on `x`: logit P = a +
    b x, fitted by Newton's method; the probability at x = 0."""
    y, x, w = (np.asarray(v, np.float64).ravel() for v in (y, x, w))
    design = np.stack([np.ones_like(x), x], axis=1)
    theta = np.zeros(2)
    for _ in range(iterations):
        p = sigmoid(design @ theta)
        gradient = design.T @ (w * (p - y))
        hessian = (design * (w * p * (1 - p))[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(sigmoid(theta[0]))


def versus_references(values_PxS, references_PxR) -> np.ndarray:
    """[P, S, R]: each sample's value less each of its prompt's references' values."""
    rows = np.arange(values_PxS.shape[0])[:, None]
    return values_PxS[:, :, None] - values_PxS[rows, references_PxR][:, None, :]


def win_rates(pick_PxS, judged_PxSxR, gold_PxSxR, length_gap_PxSxR) -> dict:
    """The pick (each pool sample counted with its probability `pick` of being best-of-n's,
    `best_of_n.pick_probabilities`) against a reference from the pool: the biased judge's mean
    P(pick preferred) over the references (`judged`: `raw`), the same preferences regressed on
    the standardised length difference (`length_gap`) and read at 0 (`controlled`), and the
    unbiased (gold) judge's (`gold`)."""
    keep = pick_PxS > 1e-12  # the samples that can be the pick
    out = {
        "raw": float((pick_PxS * judged_PxSxR.mean(axis=2)).sum(axis=1).mean()),
        "gold": float((pick_PxS * gold_PxSxR.mean(axis=2)).sum(axis=1).mean()),
    }
    out["controlled"] = logistic_intercept(
        judged_PxSxR[keep],
        length_gap_PxSxR[keep],
        np.broadcast_to(pick_PxS[..., None], judged_PxSxR.shape)[keep],
    )
    return out


def selectors(measured: dict, strengths, models: dict[str, int]) -> dict[str, dict]:
    """{strength: {selector: [P, S] score}}: for each annotator's strength, the gold-label
    model, the model of its biased labels, that model with length regressed out post hoc (its
    slope on the training responses' lengths), the model fitted beside a length covariate, the
    annotator's own utility and gold itself."""
    scores, length = measured["scores"], measured["pool_length"]
    z = (length - measured["length_mean"]) / measured["length_std"]
    out = {}
    for s in strengths:
        biased = models[f"biased labels, strength {s:g}"]
        covariate = models[f"length covariate, strength {s:g}"]
        out[s] = {
            "gold labels": scores[models["gold labels"]],
            "biased labels": scores[biased],
            "length regressed out": scores[biased] - measured["slopes"][biased] * length,
            "length covariate": scores[covariate],
            "annotator's utility": measured["pool_gold"] + s * z,
            "gold (oracle)": measured["pool_gold"],
        }
    return out


QUANTITIES = ("gold", "length", "gold beyond length", "raw", "controlled", "gold win rate")


def seed_table(
    measured: dict, strengths, models: dict[str, int], ns, temperature, num_references, seed
) -> dict:
    """One seed: for each strength and selector, every quantity of `QUANTITIES` at each n, the
    length share of the gain at the largest n and the score's length correlation; each reward
    model's held-out accuracies and length coefficient."""
    gold, length = measured["pool_gold"], measured["pool_length"].astype(np.float64)
    z = (length - measured["length_mean"]) / measured["length_std"]
    beyond = gold_beyond_length(gold, length)
    rng = np.random.default_rng([seed, 17])
    references = np.stack(
        [rng.choice(gold.shape[1], num_references, replace=False) for _ in range(gold.shape[0])]
    )
    table = {}
    gold_judged = sigmoid(versus_references(gold, references) / temperature)
    length_gap = versus_references(z, references)
    for s, chosen in selectors(measured, strengths, models).items():
        judged = sigmoid(versus_references(gold + s * z, references) / temperature)
        block = {}
        for name, score in chosen.items():
            curves = {q: [] for q in QUANTITIES}
            for n in ns:
                pick = pick_probabilities(score, n)
                w = win_rates(pick, judged, gold_judged, length_gap)
                expected = [(pick * v).sum(axis=1).mean() for v in (gold, length, beyond)]
                for q, v in zip(
                    QUANTITIES, (*expected, w["raw"], w["controlled"], w["gold"]), strict=True
                ):
                    curves[q].append(float(v))
            gain = (pick * score).sum(axis=1).mean() - score.mean()  # at the largest n
            extra_length = curves["length"][-1] - length.mean()
            curves["length share"] = least_squares_slope(score, length) * extra_length / gain
            curves["length correlation"] = length_correlation(score, length)
            block[name] = curves
        table[f"{s:g}"] = block
    return {
        "best_of_n": table,
        "accuracy": {
            name: {
                "gold": float(measured["accuracy_gold"][m]),
                "labels": float(measured["accuracy_labels"][m]),
            }
            for name, m in models.items()
        },
        "coefficients": {name: float(measured["coefficients"][m]) for name, m in models.items()},
    }


def aggregate(tables: dict[str, dict], ns) -> dict:
    """Across seeds: every curve and number (mean, 95% t half-width); at the largest n, the
    paired differences the criteria read, per strength."""
    seeds = list(tables.values())
    first = seeds[0]["best_of_n"]

    def values(strength, selector, key, index=None):
        got = [t["best_of_n"][strength][selector][key] for t in seeds]
        return np.array(got if index is None else [g[index] for g in got], np.float64)

    curves = {
        s: {
            selector: {
                key: (
                    [mean_interval(values(s, selector, key, i)) for i in range(len(ns))]
                    if isinstance(v, list)
                    else mean_interval(values(s, selector, key))
                )
                for key, v in block[selector].items()
            }
            for selector in block
        }
        for s, block in first.items()
    }
    differences = {}
    for s in first:

        def gold_minus(a, b, s=s):
            return mean_interval(values(s, a, "gold", -1) - values(s, b, "gold", -1))

        raw, controlled, truth = (
            values(s, "biased labels", q, -1) for q in ("raw", "controlled", "gold win rate")
        )
        differences[s] = {
            "correlation": mean_interval(
                values(s, "biased labels", "length correlation")
                - values(s, "gold labels", "length correlation")
            ),
            "biased_minus_gold_labels": gold_minus("biased labels", "gold labels"),
            "regressed_minus_biased": gold_minus("length regressed out", "biased labels"),
            "covariate_minus_biased": gold_minus("length covariate", "biased labels"),
            "regressed_minus_gold_labels": gold_minus("length regressed out", "gold labels"),
            "covariate_minus_gold_labels": gold_minus("length covariate", "gold labels"),
            # Positive: the length-controlled win rate is nearer the truth than the raw one.
            "controlled_error_reduction": mean_interval(
                np.abs(raw - truth) - np.abs(controlled - truth)
            ),
        }
    models = list(seeds[0]["accuracy"])
    return {
        "curves": curves,
        "differences": differences,
        "accuracy": {
            m: {
                "gold": mean_interval([t["accuracy"][m]["gold"] for t in seeds]),
                "labels": mean_interval([t["accuracy"][m]["labels"] for t in seeds]),
            }
            for m in models
        },
        "coefficients": {m: mean_interval([t["coefficients"][m] for t in seeds]) for m in models},
    }


# The columns of the best-of-n table: {quantity of `aggregate`'s curves: its header}.
SELECTOR_COLUMNS = {
    "gold": "gold",
    "length": "length",
    "gold beyond length": "gold beyond its length",
    "length share": "share of the gain that is length",
    "raw": "win rate, biased judge",
    "controlled": "length-controlled",
    "gold win rate": "win rate, gold judge",
}


def selector_table(block: dict) -> list[str]:
    """One strength's best-of-n table: every selector's `SELECTOR_COLUMNS` at the largest n
    (the length share has one value), mean ± 95% t-interval."""
    rows = [
        [
            selector,
            *(
                interval_text(curves[k] if k == "length share" else curves[k][-1], digits=2)
                for k in SELECTOR_COLUMNS
            ),
        ]
        for selector, curves in block.items()
    ]
    return table(("selector", *SELECTOR_COLUMNS.values()), rows)


PANELS = {
    "gold": "gold (standardised)",
    "length": "length of the pick (tokens)",
    "gold beyond length": "gold beyond its length",
    "raw": "win rate by the biased judge",
}


def figure(combined: dict, ns, num_seeds: int, out_dir: Path) -> list[Path]:
    """figures/length_bias.{png,pdf}: per strength (rows), best-of-n gold, length, gold beyond
    length and the biased judge's win rate of every selector against n; the last column the
    biased-label model's win rates (raw, length-controlled, gold) against n."""
    strengths = list(combined["curves"])
    columns = len(PANELS) + 1
    fig, axes = plots.subplots(
        len(strengths), columns, figsize=(4.0 * columns, 3.2 * len(strengths)), squeeze=False
    )
    for row, s in zip(axes, strengths, strict=True):
        block = combined["curves"][s]
        for ax, (key, label) in zip(row, PANELS.items()):
            series = {name: curves[key] for name, curves in block.items()}
            plots.against_n(ax, ns, series, ylabel=label, title=f"length bias {s}")
        biased = block["biased labels"]
        plots.against_n(
            row[-1],
            ns,
            {
                "biased judge (raw)": biased["raw"],
                "length-controlled": biased["controlled"],
                "gold judge": biased["gold win rate"],
            },
            ylabel="win rate, biased-label model's pick",
            title=f"length bias {s}",
        )
        row[-1].legend(fontsize=6)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"Length hacking in best-of-n ({num_seeds} seeds; mean, 95% t-intervals)")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return plots.save(fig, out_dir / "length_bias")
