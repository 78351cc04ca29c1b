"""Weak-to-strong generalisation of reward models (Burns et al. 2023): who supervises whom, the
performance gap recovered with its interval, best-of-n against each reward model, figures.

The reward models of one initialisation, by width w of `widths` (ascending):

    weak               gold labels of half A of the training pairs (every w but the largest):
                       the supervisor of every wider student
    ceiling            gold labels of half B (every w but the smallest)
    naive_d<v>         half B labelled by the weak model of width v < w (its probabilities)
    confidence_d<v>    the same with Burns et al.'s auxiliary confidence loss

PGR(v -> w) = (student - weak_v) / (ceiling_w - weak_v), from the seeds' held-out accuracies,
its 95% interval by Fieller's theorem on the paired per-seed differences (unbounded when the
gap it divides by is not resolved from 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats

from alignax.analysis import plots
from alignax.analysis.best_of_n import best_of_n_estimate
from alignax.analysis.stats import mean_interval

STUDENTS = {"naive": "naive", "confidence": "confidence loss"}
PGR_FLOOR = -1.5  # the figure's lowest PGR


def roles(widths: tuple[int, ...], w: int) -> list[str]:
    """The reward models trained at width `w` (the module docstring), in the order they train."""
    out = ["weak"] * (w < max(widths)) + ["ceiling"] * (w > min(widths))
    return out + [f"{kind}_d{v}" for v in widths if v < w for kind in STUDENTS]


def gaps(widths: tuple[int, ...]) -> list[tuple[int, int]]:
    """Every (weak width, strong width) pair, weak < strong."""
    return [(v, w) for w in widths for v in widths if v < w]


def fieller_ratio(numerator, denominator, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean(a) / mean(b), low, high): the ratio of the means of paired per-seed values `a`, `b`
    and its Fieller interval, the thetas whose mean(a - theta b) a t-test does not reject. The
    bounds are infinite when mean(b) is not resolved from 0 (the interval is then unbounded or
    the whole line); nan for fewer than two seeds.

    >>> point, low, high = fieller_ratio([1.0, 1.2, 0.8], [2.0, 2.1, 1.9])
    >>> round(point, 3), low < point < high
    (0.5, True)
    """
    a, b = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    n = len(a)
    point = a.mean() / b.mean() if b.mean() != 0 else float("nan")
    if n < 2:
        return float(point), float("nan"), float("nan")
    k = stats.t.ppf(0.5 + confidence / 2, n - 1) ** 2 / n
    s_aa, s_bb = a.var(ddof=1), b.var(ddof=1)
    s_ab = np.cov(a, b, ddof=1)[0, 1]
    # (mean a - theta mean b)^2 <= k var(a - theta b): a quadratic in theta.
    qa = b.mean() ** 2 - k * s_bb
    qb = -2 * (a.mean() * b.mean() - k * s_ab)
    qc = a.mean() ** 2 - k * s_aa
    disc = qb * qb - 4 * qa * qc
    if qa <= 0:  # the denominator is not resolved from 0
        return float(point), float("-inf"), float("inf")
    root = np.sqrt(max(disc, 0.0))
    return float(point), float((-qb - root) / (2 * qa)), float((-qb + root) / (2 * qa))


def seed_table(measured: dict, init: str, widths, ns: list[int]) -> dict:
    """One seed, one initialisation: {"d<w>/<role>": {"accuracy": held-out accuracy against
    gold, "best_of_n": [gold of best-of-n by it, for each n]}} from `measure_seed`'s arrays."""
    gold = measured["pool_gold"]
    out = {}
    for w in widths:
        for role in roles(widths, w):
            name = f"{init}.d{w}.{role}"
            scores = measured[f"{name}.pool"]
            out[f"d{w}/{role}"] = {
                "accuracy": float(measured[f"{name}.accuracy"]),
                "best_of_n": [best_of_n_estimate(scores, gold, n)["gold"] for n in ns],
            }
    return out


def aggregate(tables: dict[str, dict], widths, ns: list[int]) -> dict:
    """Across seeds ({seed: seed_table}): each model's accuracy and best-of-n gold (mean, 95%
    t half-width), and for each gap and student kind the accuracy gained over the weak model,
    the gap it could recover (ceiling - weak), the PGR with its Fieller interval, and the
    confidence loss's gain over the naive student (paired by seed)."""
    seeds = list(tables.values())
    models = {}
    for name in seeds[0]:
        models[name] = {
            "accuracy": mean_interval([t[name]["accuracy"] for t in seeds]),
            "best_of_n": [
                mean_interval([t[name]["best_of_n"][i] for t in seeds]) for i in range(len(ns))
            ],
        }
    recovered = {}
    for v, w in gaps(widths):
        weak = np.array([t[f"d{v}/weak"]["accuracy"] for t in seeds])
        ceiling = np.array([t[f"d{w}/ceiling"]["accuracy"] for t in seeds])
        row = {"ceiling_minus_weak": mean_interval(ceiling - weak)}
        for kind in STUDENTS:
            student = np.array([t[f"d{w}/{kind}_d{v}"]["accuracy"] for t in seeds])
            row[kind] = {
                "minus_weak": mean_interval(student - weak),
                "pgr": fieller_ratio(student - weak, ceiling - weak),
            }
        naive = np.array([t[f"d{w}/naive_d{v}"]["accuracy"] for t in seeds])
        confident = np.array([t[f"d{w}/confidence_d{v}"]["accuracy"] for t in seeds])
        row["confidence_minus_naive"] = mean_interval(confident - naive)
        bon = {
            role: np.array([t[f"d{w if role != 'weak' else v}/{name}"]["best_of_n"] for t in seeds])
            for role, name in (
                ("weak", "weak"),
                ("naive", f"naive_d{v}"),
                ("confidence", f"confidence_d{v}"),
                ("ceiling", "ceiling"),
            )
        }
        row["best_of_n_naive_minus_weak"] = [
            mean_interval(bon["naive"][:, i] - bon["weak"][:, i]) for i in range(len(ns))
        ]
        recovered[f"d{v}->d{w}"] = row
    return {"models": models, "gaps": recovered}


def pgr_text(pgr: tuple[float, float, float]) -> str:
    point, low, high = pgr
    if not np.isfinite(low) or not np.isfinite(high):
        return f"{point:.2f} (unbounded)" if np.isfinite(point) else "undefined"
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


def figure(combined: dict, widths, ns: list[int], num_seeds: int, out_dir: Path) -> list[Path]:
    """figures/weak_to_strong.{png,pdf}: for each initialisation, held-out accuracy against the
    student's width (the weak and ceiling models on gold labels, the students of each weak
    supervisor), PGR against the size gap, and best-of-n gold for the widest gap."""
    inits = list(combined)
    fig, axes = plots.subplots(
        len(inits), 3, figsize=(13, 4.6 * len(inits)), squeeze=False, layout="constrained"
    )
    smallest, largest = min(widths), max(widths)
    for row, init in zip(axes, inits, strict=True):
        models = combined[init]["models"]
        acc, pgr_ax, bon_ax = row
        gold_widths = list(widths)
        gold = [
            models[f"d{w}/{'ceiling' if w > smallest else 'weak'}"]["accuracy"] for w in gold_widths
        ]
        plots.intervals(acc, gold_widths, gold, fmt="o-", color="black", label="gold labels")
        for i, v in enumerate(w for w in widths if w < largest):
            students = [w for w in widths if w > v]
            for kind, style in (("naive", "s--"), ("confidence", "^:")):
                values = [models[f"d{w}/{kind}_d{v}"]["accuracy"] for w in students]
                plots.intervals(
                    acc,
                    students,
                    values,
                    fmt=style,
                    color=plots.series_color(i),
                    label=f"{STUDENTS[kind]}, weak d={v}",
                )
        acc.set_xscale("log", base=2)
        acc.set_xlabel("student width (d_model)")
        acc.set_ylabel("held-out accuracy against gold")
        acc.set_title(f"{init} reward models")
        acc.legend(fontsize=6, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
        for j, kind in enumerate(STUDENTS):
            xs, points, lows, highs = [], [], [], []
            for name, gap in combined[init]["gaps"].items():
                v, w = (int(p.removeprefix("d")) for p in name.split("->"))
                point, low, high = gap[kind]["pgr"]
                xs.append(np.log2(w / v) + (j - 0.5) * 0.08)
                points.append(point)
                lows.append(point - low if np.isfinite(low) else 0.0)
                highs.append(high - point if np.isfinite(high) else 0.0)
            # A PGR far below 0 (a tiny gap to recover) is drawn at the axis's floor, as a "v".
            shown = np.maximum(points, PGR_FLOOR)
            below = np.array(points) < PGR_FLOOR
            color = plots.series_color(j)
            pgr_ax.errorbar(xs, shown, yerr=[lows, highs], fmt="none", capsize=2, color=color)
            pgr_ax.plot(np.array(xs)[~below], shown[~below], "o", color=color, label=STUDENTS[kind])
            pgr_ax.plot(np.array(xs)[below], shown[below], "v", color=color)
        pgr_ax.set_ylim(PGR_FLOOR - 0.1, 1.5)
        pgr_ax.axhline(0, color="grey", lw=0.8)
        pgr_ax.axhline(1, color="grey", lw=0.8, ls="--")
        pgr_ax.set_xlabel("size gap, log2(strong width / weak width)")
        pgr_ax.set_ylabel("performance gap recovered")
        pgr_ax.set_title(f"PGR (Fieller 95%; no bar: unbounded; v: below {PGR_FLOOR})")
        pgr_ax.legend()
        widest = {
            f"weak d={smallest}": f"d{smallest}/weak",
            f"naive student d={largest}": f"d{largest}/naive_d{smallest}",
            f"confidence student d={largest}": f"d{largest}/confidence_d{smallest}",
            f"ceiling d={largest}": f"d{largest}/ceiling",
        }
        plots.against_n(
            bon_ax,
            ns,
            {label: models[name]["best_of_n"] for label, name in widest.items()},
            ylabel="gold reward of the pick",
            title=f"best-of-n, gap d{smallest}->d{largest}",
        )
        bon_ax.legend()
    fig.suptitle(f"Weak-to-strong reward models ({num_seeds} seeds, 95% intervals)")
    return plots.save(fig, out_dir / "weak_to_strong")
