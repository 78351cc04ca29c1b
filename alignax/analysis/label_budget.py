"""The analysis of the targeted-human-labels study (experiments/rlaif.py): per condition (how
the budget of gold labels is routed, and its size), means over seeds with 95% intervals and the
paired differences from pure AI and pure human feedback; the criterion that a budget closes the
gap between them; the budget figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignax.analysis import plots
from alignax.analysis.stats import mean_interval


def aggregate(planned: list[tuple[str, float]], per_seed: list[dict]) -> dict:
    """Means over seeds with 95% intervals of the judge statistics and of every condition, and
    the per-seed (paired) differences of each condition's gold reward from pure AI feedback
    (targeted 0%), from pure human feedback (targeted 100%) and, for targeted budgets, from the
    random labels of the same budget. `planned`: the (routing, budget %) conditions
    (`feedback.routing.conditions`)."""
    judge = {k: mean_interval([r["judge"][k] for r in per_seed]) for k in per_seed[0]["judge"]}

    def gold(routing: str, percent: float) -> np.ndarray:
        return np.array([condition_run(r, routing, percent)["gold_reward"] for r in per_seed])

    rows = []
    for routing, percent in planned:
        runs = [condition_run(r, routing, percent) for r in per_seed]
        row = {"routing": routing, "percent": percent, "gold_labels": runs[0]["gold_labels"]}
        for key in ("label_gold_agreement", "gold_reward", "kl_to_reference", "eval_accuracy"):
            row[key] = mean_interval([x[key] for x in runs])
        mine = gold(routing, percent)
        for name, other in (("ai", ("targeted", 0.0)), ("human", ("targeted", 100.0))):
            if other in planned:
                row[f"minus_{name}"] = mean_interval(mine - gold(*other))
        if routing == "targeted" and ("random", percent) in planned:
            row["minus_random"] = mean_interval(mine - gold("random", percent))
        rows.append(row)
    out = {"judge": judge, "conditions": rows}
    if "delta" in per_seed[0]:
        delta = {k: mean_interval([r["delta"][k] for r in per_seed]) for k in per_seed[0]["delta"]}
        delta["minus_human_gold_reward"] = mean_interval(
            np.array([r["delta"]["gold_reward"] for r in per_seed]) - gold("targeted", 100.0)
        )
        out["delta"] = delta
    return out


def condition_run(seed_result: dict, routing: str, percent: float) -> dict:
    """One seed's run of a condition."""
    return next(
        x for x in seed_result["runs"] if x["routing"] == routing and x["percent"] == percent
    )


def closes_gap(row: dict) -> bool | None:
    """The criterion, stated before the run: p% targeted human labels close the gap between
    pure AI and pure human feedback when their gold reward is above pure AI feedback's (the
    paired interval excludes 0) and not below pure human feedback's (the paired interval
    reaches 0). None where an interval is missing or undefined (one seed)."""
    if "minus_ai" not in row or "minus_human" not in row:
        return None
    (ai, ai_half), (human, human_half) = row["minus_ai"], row["minus_human"]
    if not (np.isfinite(ai_half) and np.isfinite(human_half)):
        return None
    return bool(ai - ai_half > 0 and human + human_half >= 0)


def figure(rows: list[dict], workdir: Path) -> None:
    """Gold reward and label agreement against the human-label budget, targeted and random, as
    figures/rlaif_budget.{png,pdf} in `workdir`."""
    fig, axes = plots.subplots(1, 2, figsize=(9, 3.4))
    for i, routing in enumerate(("targeted", "random")):
        mine = sorted((r for r in rows if r["routing"] == routing), key=lambda r: r["percent"])
        if routing == "random":  # the shared end points: 0% and 100% are the same labels
            mine = sorted(
                mine + [r for r in rows if r["routing"] == "targeted" and r["percent"] in (0, 100)],
                key=lambda r: r["percent"],
            )
        x = [r["percent"] for r in mine]
        for ax, key in zip(axes, ("gold_reward", "label_gold_agreement")):
            label, color = f"{routing} human labels", plots.series_color(i)
            points = [r[key] for r in mine]
            plots.intervals(ax, x, points, fmt="o-", color=color, markersize=3, label=label)
    for ax, label in zip(axes, ("gold reward of the DPO policy", "labels agreeing with gold")):
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set(xlabel="human-label budget (% of pairs)", ylabel=label)
    axes[0].legend()
    fig.suptitle("AI feedback with targeted human labels (95% intervals over seeds)")
    plots.save(fig, workdir / "figures" / "rlaif_budget")
