"""The figures of the RLVR study (experiments/rlvr.py): pass@k before and after RL against k
beside a problem-blind guesser, the paired change per k, and pass@k against the sampling
temperature; each policy's mean over seeds with 95% t-intervals, single seeds faint.

    figures(results, sweep_ks=[1, 2, 4], directory=workdir / "figures")

`results` is the study's results.json: "ks", "sweep_temperatures", "guessing" ({"pass@k"}),
"seeds" ({seed: {policy: {metric: value}}}) and "combined" ({policy or "change": {metric:
(mean, half-width)}}), with metrics "pass@k" at temperature 1 and "T<t>/pass@k" at the others.
"""

from __future__ import annotations

from pathlib import Path

from alignax.analysis import plots

LABELS = {"sft": "before (SFT)", "grpo": "after (GRPO)"}
POLICIES = tuple(LABELS)


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
