"""The analysis of the RLVR study (experiments/rlvr.py): per seed, pass@k before and after RL
from the per-problem counts of right samples; over seeds, the paired change and the answer
("sharpening", "broadening", "neither") at each temperature; the figures: pass@k against k
beside a problem-blind guesser, the paired change per k, and pass@k against the sampling
temperature; each policy's mean over seeds with 95% t-intervals, single seeds faint.

    tables = {seed: seed_table(config.eval, outcomes) for seed, outcomes in seeds.items()}
    combined = aggregate(tables)
    answers = verdicts(config.eval, combined)
    figures(results, sweep_ks=[1, 2, 4], directory=workdir / "figures")

`config.eval` holds `ks` and `num_samples` (temperature 1), `sweep_temperatures` and
`sweep_samples`.

`results` is the study's results.json: "ks", "sweep_temperatures", "guessing" ({"pass@k"}),
"seeds" ({seed: {policy: {metric: value}}}) and "combined" ({policy or "change": {metric:
(mean, half-width)}}), with metrics "pass@k" at temperature 1 and "T<t>/pass@k" at the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignax.analysis import plots
from alignax.analysis.pass_at_k import classify_change, coverage, mean_pass_at_k, solvable_sets
from alignax.analysis.stats import seed_means

LABELS = {"sft": "before (SFT)", "grpo": "after (GRPO)"}
POLICIES = tuple(LABELS)


def sweep_ks(e) -> list[int]:
    """The ks reported at the swept temperatures: those their sample count allows."""
    return [k for k in e.ks if k <= e.sweep_samples]


def _pass_at_ks(counts, num_samples: int, ks) -> dict[str, float]:
    return {f"pass@{k}": v for k, v in mean_pass_at_k(counts, num_samples, ks).items()}


def seed_table(e, outcomes: dict) -> dict:
    """One seed's table from its `outcomes` ("<policy>_counts" [P], "<policy>_sweep_counts"
    [T, P], "<policy>_greedy" [P]): per policy, pass@k at temperature 1, coverage and greedy
    accuracy, and pass@k at each swept temperature ("T0.6/pass@1"); "solvable": the shares of
    problems that some sample solves under SFT only, GRPO only, both or neither (temperature 1)."""
    table = {}
    for name in POLICIES:
        counts = outcomes[f"{name}_counts"]
        row = _pass_at_ks(counts, e.num_samples, e.ks)
        row["coverage"] = coverage(counts)
        row["greedy"] = float(np.mean(outcomes[f"{name}_greedy"]))
        for t, swept in zip(e.sweep_temperatures, outcomes[f"{name}_sweep_counts"], strict=True):
            at_t = _pass_at_ks(swept, e.sweep_samples, sweep_ks(e))
            row.update({f"T{t}/{key}": value for key, value in at_t.items()})
        table[name] = row
    table["solvable"] = solvable_sets({name: outcomes[f"{name}_counts"] for name in POLICIES})
    return table


def aggregate(tables: dict) -> dict:
    """Row ("sft", "grpo", "solvable", and "change" = grpo - sft, paired within each seed) ->
    metric -> (mean, 95% half-width) over seeds."""
    change = {
        seed: {"change": {m: t["grpo"][m] - t["sft"][m] for m in t["sft"]}}
        for seed, t in tables.items()
    }
    return {**seed_means(tables), **seed_means(change)}


def verdicts(e, combined: dict) -> dict:
    """The answer (`classify_change`) at temperature 1 ("1.0") and at each swept temperature,
    each at the largest k its samples allow."""
    change = combined["change"]
    largest, largest_swept = max(e.ks), max(sweep_ks(e))
    out = {"1.0": classify_change(change["pass@1"], change[f"pass@{largest}"], largest_k=largest)}
    for t in e.sweep_temperatures:
        out[str(t)] = classify_change(
            change[f"T{t}/pass@1"], change[f"T{t}/pass@{largest_swept}"], largest_k=largest_swept
        )
    return out


def figures(results: dict, sweep_ks: list[int], directory: Path) -> None:
    """pass@k against k (with the guesser), the change per k, and pass@k against temperature
    (at 1: the main samples), as PNG and PDF in `directory`."""
    ks, tables, combined = results["ks"], results["seeds"], results["combined"]
    fig, ax = plots.subplots(figsize=(4.8, 3.4))
    for i, name in enumerate(POLICIES):
        color = plots.series_color(i)
        for table in tables.values():
            ax.plot(ks, [table[name][f"pass@{k}"] for k in ks], "-", color=color, alpha=0.25)
        ax.errorbar(
            [k * (0.96 if name == "sft" else 1.04) for k in ks],  # apart, so both bars show
            [combined[name][f"pass@{k}"][0] for k in ks],
            yerr=[combined[name][f"pass@{k}"][1] for k in ks],
            fmt="o-",
            color=color,
            markersize=4,
            capsize=3,
            label=f"{LABELS[name]}, mean ± 95% CI",
        )
    ax.plot([], [], "-", color="grey", alpha=0.4, label="single seeds")
    guess = results["guessing"]
    ax.plot(ks, [guess[f"pass@{k}"] for k in ks], "k--", linewidth=1, label="problem-blind guesser")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set(
        xlabel="k (samples per problem)",
        ylabel="pass@k (held-out problems)",
        title=f"pass@k before and after GRPO ({len(tables)} seeds)",
    )
    ax.legend(loc="lower right")
    plots.save(fig, directory / "pass_at_k")

    fig, ax = plots.subplots(figsize=(4.8, 3.4))
    changes = [combined["change"][f"pass@{k}"] for k in ks]
    for table in tables.values():
        ax.plot(
            ks,
            [table["grpo"][f"pass@{k}"] - table["sft"][f"pass@{k}"] for k in ks],
            "-",
            color=plots.PALETTE[2],
            alpha=0.25,
        )
    ax.errorbar(
        ks,
        [m for m, _ in changes],
        yerr=[h for _, h in changes],
        fmt="o-",
        color=plots.PALETTE[2],
        markersize=4,
        capsize=3,
        label="GRPO - SFT, mean ± 95% CI",
    )
    ax.plot([], [], "-", color=plots.PALETTE[2], alpha=0.4, label="single seeds")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set(
        xlabel="k (samples per problem)",
        ylabel="change in pass@k",
        title="What GRPO changes, per k",
    )
    ax.legend()
    plots.save(fig, directory / "pass_at_k_change")

    temperatures = sorted((1.0, *results["sweep_temperatures"]))
    fig, axes = plots.subplots(1, 2, figsize=(8.4, 3.2))
    for ax, k in zip(axes, (1, max(sweep_ks)), strict=True):
        for i, name in enumerate(POLICIES):
            points = [combined[name][temperature_key(t, k)] for t in temperatures]
            ax.errorbar(
                temperatures,
                [m for m, _ in points],
                yerr=[h for _, h in points],
                fmt="o-",
                color=plots.series_color(i),
                capsize=3,
                label=LABELS[name],
            )
        ax.set(xlabel="sampling temperature", ylabel=f"pass@{k}", title=f"pass@{k} by temperature")
    axes[0].legend()
    plots.save(fig, directory / "temperatures")


def temperature_key(t: float, k: int) -> str:
    """The metric of pass@k at temperature t: the main samples' at 1, the sweep's otherwise."""
    return f"pass@{k}" if t == 1.0 else f"T{t}/pass@{k}"
