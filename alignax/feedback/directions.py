"""Directional Preference Alignment (Wang et al. 2024): pairs labelled toward a direction in the
plane of two objectives, and the paired test of the front the directions trace.

A direction theta weighs the objectives' scores, each standardised by its spread s over the
responses, as cos(theta) r_1 / s_1 + sin(theta) r_2 / s_2 (`principles.directional_reward`); a
Bradley-Terry annotator of that reward labels each pair. A pair the reward cannot order is tied
(`tied`): its label would be a coin flip, so a study may drop it (`labelled_pairs`).
experiments/dpa.py trains one DPO policy per direction on these labels; `aggregate` and `figure`
summarise its seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignax.analysis import plots
from alignax.analysis.stats import mean_interval
from alignax.feedback.judges import sigmoid
from alignax.feedback.principles import directional_reward, unit_direction, vector_reward_np
from alignax.feedback.runs import chosen_first


def direction(degrees: float) -> np.ndarray:
    """The unit direction at `degrees` from the first objective's axis (cos and sin rounded to
    12 decimals, so 90 degrees weighs the first objective exactly 0)."""
    return np.round(unit_direction(np.radians(degrees)), 12)


def objective_scores(task, pairs: dict, principles) -> np.ndarray:
    """[N, 2, P]: each response's score on each principle."""
    n = pairs["tokens"].shape[0]
    flat = lambda k: pairs[k].reshape(2 * n, -1)
    return vector_reward_np(task, flat("tokens"), flat("loss_mask"), principles).reshape(n, 2, -1)


def directional_margin(scores_Nx2xP, spread_P, degrees) -> np.ndarray:
    """[N]: <w, r_a / s> - <w, r_b / s>, the directional reward's difference within each pair."""
    standardised = scores_Nx2xP / spread_P
    w = direction(degrees)
    return directional_reward(standardised[:, 0], w) - directional_reward(standardised[:, 1], w)


def tied(scores_Nx2xP, spread_P, degrees) -> np.ndarray:
    """[N] bool: pairs the directional reward cannot order (equal to 1e-9). At 90 degrees only
    the second objective counts, and two responses with no repeated bigram tie on it."""
    return np.abs(directional_margin(scores_Nx2xP, spread_P, degrees)) <= 1e-9


def directional_labels(scores_Nx2xP, spread_P, degrees, temperature, rng) -> np.ndarray:
    """True where response a is chosen: a Bradley-Terry draw with
    P(a > b) = sigmoid((<w, r_a / s> - <w, r_b / s>) / temperature)."""
    margin = directional_margin(scores_Nx2xP, spread_P, degrees)
    probability = sigmoid(margin / temperature)
    return rng.random(len(probability)) < probability


def labelled_pairs(pairs, scores_Nx2xP, spread_P, degrees, temperature, rng, *, drop_ties):
    """`pairs` in DPO's layout (chosen first), labelled by the annotator of the directional
    reward (`directional_labels`); the pairs it ties on (`tied`) dropped with `drop_ties`."""
    chosen = chosen_first(
        pairs, directional_labels(scores_Nx2xP, spread_P, degrees, temperature, rng)
    )
    if not drop_ties:
        return chosen
    kept = ~tied(scores_Nx2xP, spread_P, degrees)
    return {k: v[kept] for k, v in chosen.items()}


def front_steps(objectives: dict[float, np.ndarray]) -> list[dict]:
    """Each step between adjacent directions ({degrees: [seeds, 2] scores on the two
    objectives}, in the order of the directions): the change of each objective (later minus
    earlier), paired by seed, with its 95% t-interval; `in_order` when the step lowers the first
    objective and raises the second, both intervals excluding 0 (a front traced in order, tested
    step by step)."""
    directions = list(objectives)
    steps = []
    for earlier, later in zip(directions, directions[1:]):
        change = np.asarray(objectives[later]) - np.asarray(objectives[earlier])
        first, second = (mean_interval(change[:, i]) for i in range(2))
        steps.append(
            {
                "from": float(earlier),
                "to": float(later),
                "change": [first, second],
                "in_order": bool(first[0] + first[1] < 0 and second[0] - second[1] > 0),
            }
        )
    return steps


# ---------------------------------------------------------------------------------------------
# The study's summaries over seeds (experiments/dpa.py).


def aggregate(config, per_seed: list[dict]) -> dict:
    """Per policy (SFT, then each direction): means over seeds with 95% intervals of each
    objective, the gold reward and the KL; the paired change of each objective from one
    direction to the next (`front_steps`), at the final step and at matched KL."""

    def summarise(entries):
        return {
            "objectives": [
                mean_interval([e["objectives"][i] for e in entries])
                for i in range(len(config.objectives))
            ],
            "gold_reward": mean_interval([e["gold_reward"] for e in entries]),
        }

    rows, matched = [], []
    for degrees in config.directions:
        runs = [direction_run(r, degrees) for r in per_seed]
        row = {"degrees": float(degrees), **summarise(runs)}
        row["kl_to_reference"] = mean_interval([x["kl_to_reference"] for x in runs])
        row["tied_share"] = mean_interval([x["tied_share"] for x in runs])
        rows.append(row)
        reached = [x["matched"] for x in runs if x["matched"] is not None]
        matched.append(
            {
                "degrees": float(degrees),
                "seeds_reached": len(reached),
                **(
                    {
                        **summarise(reached),
                        "step": mean_interval([x["step"] for x in reached]),
                    }
                    if len(reached) == len(runs)
                    else {}
                ),
            }
        )
    every_seed = all(m["seeds_reached"] == len(per_seed) for m in matched)

    def steps(objectives_of):  # the paired step test of the front (`front_steps`)
        return front_steps(
            {
                d: np.array([objectives_of(direction_run(r, d)) for r in per_seed])
                for d in config.directions
            }
        )

    return {
        "sft": summarise([r["sft"] for r in per_seed]),
        "directions": rows,
        "steps": steps(lambda run: run["objectives"]),
        "matched_kl": {
            "budget": float(config.matched_kl),
            "directions": matched,
            "steps": steps(lambda run: run["matched"]["objectives"]) if every_seed else [],
        },
    }


def direction_run(seed_result: dict, degrees: float) -> dict:
    """One seed's run toward `degrees`."""
    return next(x for x in seed_result["runs"] if x["degrees"] == degrees)


def figure(config, result: dict, workdir: Path) -> None:
    """The front in the objectives' plane: each direction's policy at its run's end (filled)
    and at the matched KL (open), and SFT; as figures/pareto_front.{png,pdf} in `workdir`."""
    fig, ax = plots.subplots(1, 1, figsize=(5.2, 4.2))

    def point(objectives, **style):  # one policy's mean on both objectives, 95% intervals
        (x, x_half), y = objectives
        plots.intervals(ax, [x], [y], xerr=[np.nan_to_num(x_half)], markersize=4, **style)

    for name, rows, line in (("final", result["directions"], "-"),
                             ("matched", result["matched_kl"]["directions"], "--")):  # fmt: skip
        rows = [r for r in rows if "objectives" in r]  # matched KL: reached in every seed
        ax.plot(*([r["objectives"][i][0] for r in rows] for i in range(2)), line,
                color=plots.PALETTE[0], linewidth=1, zorder=1)  # fmt: skip
        for i, r in enumerate(rows):
            label = f"DPO, direction {r['degrees']:g} deg" if name == "final" else None
            face = {} if name == "final" else {"markerfacecolor": "white"}
            point(r["objectives"], fmt="o", color=plots.series_color(i), label=label, **face)
    point(result["sft"]["objectives"], fmt="s", color="black", label="SFT (start)")
    ax.set(xlabel=f"{config.objectives[0]} score", ylabel=f"{config.objectives[1]} score")
    ax.legend(fontsize=7)
    ax.set_title("Directional preference alignment: at each run's end (filled) and at KL "
                 f"{result['matched_kl']['budget']:g} nats (open)\n(held-out prompts, 95% "
                 "intervals over seeds)", fontsize=9)  # fmt: skip
    plots.save(fig, workdir / "figures" / "pareto_front")
