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
The reward models of the study's best-of-n half are trained and measured here too (one vmapped
run per seed, `measure_reward_models`), with its criteria (1)-(5) and its part of results.md.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from alignax import labels
from alignax.analysis import plots
from alignax.analysis.best_of_n import pick_probabilities
from alignax.analysis.policy_eval import EVAL_SEED_OFFSET, score_pairs
from alignax.analysis.report import table
from alignax.analysis.stats import (
    interval_text,
    interval_verdict,
    least_squares_slope,
    mean_interval,
)
from alignax.models import build_model
from alignax.proxies import reward_model_config, section_reward_sweep
from alignax.sweeps import make_member_scorer
from alignax.tasks import get_task
from alignax.tasks.base import response_lengths


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


# ---------------------------------------------------------------------------------------------
# The reward models: trained on every annotator's labels and measured, per seed.


# The covariate's unit, in standard deviations of length: Adam moves the coefficient by about
# the learning rate a step, so it is fitted per tenth of a standard deviation to reach the
# annotators' 1-4 per standard deviation (strength / temperature) within the run.
COVARIATE_UNIT = 0.1


def reward_models(strengths) -> dict[str, int]:
    """{model name: its member index}: the gold-label model, then per strength the biased-label
    model, then per strength the one fitted beside the length covariate."""
    out = {"gold labels": 0}
    for i, s in enumerate(strengths):
        out[f"biased labels, strength {s:g}"] = 1 + i
        out[f"length covariate, strength {s:g}"] = 1 + len(strengths) + i
    return out


def check_best_of_n_sections(config) -> None:
    """The errors of the best-of-n half's sections (`bias`, `pool`), before anything runs."""
    strengths = tuple(config.bias.strengths)
    if not strengths or len(set(strengths)) < len(strengths) or min(strengths) <= 0:
        raise ValueError(
            f"bias.strengths={strengths}: distinct positive length biases (0 is the gold-label "
            "control, always trained)"
        )
    if config.bias.annotator_temperature <= 0:
        raise ValueError(
            f"bias.annotator_temperature={config.bias.annotator_temperature}: must be positive"
        )
    if not 1 <= config.pool.num_references <= config.pool.pool_size:
        raise ValueError(
            f"pool.num_references={config.pool.num_references}: between 1 and pool.pool_size="
            f"{config.pool.pool_size}"
        )


def measure_reward_models(config, seed: int) -> dict[str, np.ndarray]:
    """Every model's scores of the pool, its accuracy against gold and each annotator, its length
    slope and covariate coefficient; the pool's gold and lengths; the length statistics."""
    b, r, n = config.bias, config.rm, config.pairs.num_pairs
    strengths = list(b.strengths)
    task = get_task(config.task_name, config.task)
    train = labels.shuffled_generator_pairs(task, n, seed=seed, split="train")
    length = response_lengths(train).astype(np.float64)  # tokens, the EOS included
    mean, std = length.mean(), max(length.std(), 1e-6)
    z = (length - mean) / std
    uniform = np.random.default_rng([seed, 37]).random(n)
    gold = train["gold_reward"].astype(np.float64)
    biased = [annotate(gold + s * z, uniform, b.annotator_temperature) for s in strengths]
    targets = [annotate(gold, uniform, b.annotator_temperature), *biased, *biased]
    no_covariate = np.zeros(n, np.float32)
    gap = ((z[:, 0] - z[:, 1]) / COVARIATE_UNIT).astype(np.float32)
    covariates = [no_covariate] * (1 + len(strengths)) + [gap] * len(strengths)
    m = len(targets)

    model = build_model(reward_model_config(config.model, r.width), heads=("reward",))
    sweep = section_reward_sweep(model, r, train, with_covariate=True)
    keys = jnp.stack([jax.random.fold_in(jax.random.key(seed), i) for i in range(m)])
    (trained, coefficients), _ = sweep(
        (jax.vmap(model.init)(keys), jnp.zeros(m)),
        jnp.asarray(np.stack(targets)),
        jnp.zeros(m, int),
        jnp.full(m, n),
        jnp.zeros(m),
        jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys),
        covariate=jnp.asarray(np.stack(covariates)),
    )
    fitted = np.asarray(coefficients)[1 + len(strengths) :] / COVARIATE_UNIT
    print(
        f"[length_bias] seed {seed}: {m} reward models trained; length coefficients "
        f"{np.round(fitted, 2).tolist()} per standard deviation (the annotators' "
        f"{[s / b.annotator_temperature for s in strengths]})",
        flush=True,
    )
    score = make_member_scorer(model)
    train_scores = score_pairs(score, trained, train)

    test = labels.shuffled_generator_pairs(
        task, config.pairs.num_eval_pairs, seed=EVAL_SEED_OFFSET + seed, split="eval"
    )
    test_gold = test["gold_reward"].astype(np.float64)
    test_z = (response_lengths(test) - mean) / std
    tested = score_pairs(score, trained, test)
    said = tested[..., 0] > tested[..., 1]  # [M, N]
    pool = labels.generator_pool(
        task, config.pool.num_prompts, config.pool.pool_size, seed=EVAL_SEED_OFFSET + seed
    )

    def prefers_first(utility):
        return utility[:, 0] > utility[:, 1]

    return {
        "scores": score_pairs(score, trained, pool),
        "pool_gold": pool["gold_reward"].astype(np.float64),
        "pool_length": response_lengths(pool).astype(np.float64),
        "length_mean": np.float64(mean),
        "length_std": np.float64(std),
        "slopes": np.array([least_squares_slope(train_scores[i], length) for i in range(m)]),
        "coefficients": np.asarray(coefficients) / COVARIATE_UNIT,  # per standard deviation
        "accuracy_gold": (said == prefers_first(test_gold)).mean(axis=1),
        # Against the annotator of each model's own strength (gold's for the gold-label model).
        "accuracy_labels": np.array(
            [
                np.mean(said[i] == prefers_first(test_gold + s * test_z))
                for i, s in enumerate([0.0, *strengths, *strengths])
            ]
        ),
    }


# Criteria (1)-(5), per strength at the largest n: (the difference, its answer's key, the
# criterion as results.md states it, the verdict above 0, below 0).
CRITERIA = (
    ("correlation", "correlation", "(1) length correlation, biased minus gold labels",
     "more correlated with length", "less"),
    ("biased_minus_gold_labels", "cost", "(2) gold, biased minus gold labels",
     "higher gold", "lower gold than gold labels"),
    ("regressed_minus_biased", "regressed", "(3) gold, length regressed out minus biased",
     "raises gold", "lowers it"),
    ("covariate_minus_biased", "covariate", "(4) gold, length covariate minus biased",
     "raises gold", "lowers it"),
    ("controlled_error_reduction", "controlled",
     "(5) win-rate error vs gold judge, raw minus length-controlled",
     "nearer the truth", "farther from it"),
)  # fmt: skip


def best_of_n_answers(combined: dict) -> dict:
    """{strength: {answer: verdict}}: criteria (1)-(5) answered from their intervals."""
    return {
        s: {answer: interval_verdict(d[key], *words) for key, answer, _, *words in CRITERIA}
        for s, d in combined["differences"].items()
    }


def best_of_n_report(config, results: dict) -> list[str]:
    """results.md's best-of-n half: the setting, a table of selectors per strength, the reward
    models' accuracy and covariate, and criteria (1)-(5) at the largest n."""
    b, r, p, ns = config.bias, config.rm, config.pool, results["ns"]
    c, a = results["combined"], results["answers"]
    largest = ns[-1]
    lines = [
        f"Annotators prefer by gold + strength x (length z-score), Bradley-Terry at temperature "
        f"{b.annotator_temperature} (gold's units), strengths "
        f"{', '.join(f'{s:g}' for s in b.strengths)}; an unbiased annotator (gold labels) the "
        f"control; every annotator labels the same {config.pairs.num_pairs} pairs of generator "
        "responses to training prompts from the same uniform draws. Reward models of width "
        f"{r.width}, {r.steps} steps of {r.batch_size} pairs, one vmapped run: on gold labels; "
        "per strength on the biased labels, and on them beside a learnt length covariate (its "
        "reward alone used). 'Length regressed out' is the biased-label model less its "
        "least-squares slope on the training responses' lengths times the length. Best-of-n "
        f"on {p.pool_size} generator samples to each of {p.num_prompts} held-out prompts; gold "
        "in the task's standardised units; gold beyond its length is gold less the pool's mean "
        "gold at that length; the share of the gain that is length is the selector's pool slope "
        "on length times the pick's extra length over the pick's extra score. Win rates of the "
        f"pick against {p.num_references} pool samples of its prompt: the biased judge's mean "
        "preference (raw), that judge's preferences regressed on the length difference (logistic, "
        "read at equal length: length-controlled) and the unbiased judge's (gold, same "
        "temperature). Mean over seeds ± 95% t-interval; differences paired by seed.",
    ]
    for s, block in c["curves"].items():
        gold_labels = block["gold labels"]
        lines += [
            "",
            f"Length bias {s}: best-of-{largest} (best-of-1, the pool's mean: gold "
            f"{gold_labels['gold'][0][0]:.2f}, length {gold_labels['length'][0][0]:.1f}, win "
            "rates 0.5):",
            "",
            *selector_table(block),
        ]
    acc, coef = c["accuracy"], c["coefficients"]
    lines += [
        "",
        "Held-out accuracy against gold labels (and against the labels' own annotator): "
        + "; ".join(
            f"{name}: {interval_text(acc[name]['gold'], 2)} "
            f"({interval_text(acc[name]['labels'], 2)})"
            for name in acc
        )
        + ". The length covariate's coefficient, per standard deviation of length (the "
        f"annotator's own is strength / {b.annotator_temperature}): "
        + ", ".join(
            f"strength {s}: {interval_text(coef[f'length covariate, strength {s}'], 2)}"
            for s in c["curves"]
        )
        + ".",
        "",
        f"Criteria stated before the run (configs/length_bias.py), at n = {largest}:",
        "",
        *table(
            ("strength", "criterion", "difference", "answer"),
            (
                (s, label, interval_text(d[key], digits=3, signed=True), f"**{a[s][answer]}**")
                for s, d in c["differences"].items()
                for key, answer, label, *_ in CRITERIA
            ),
        ),
        "",
        "Observed, not criteria: each mitigation against the gold-label model, gold at n = "
        f"{largest}: "
        + "; ".join(
            f"strength {s}: regressed {interval_text(d['regressed_minus_gold_labels'], 2, True)}"
            f", covariate {interval_text(d['covariate_minus_gold_labels'], 2, True)}"
            for s, d in c["differences"].items()
        )
        + ".",
        "",
    ]
    return lines
