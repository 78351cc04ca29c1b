"""Reward-KL frontiers (Rafailov et al. 2023, Fig. 2): a method's best gold reward within each
KL budget, from the (KL, gold) points its runs reach, and the rule that decides between two
methods from their per-seed differences.

    kl, gold = upper_envelope(points_kl, points_gold)   # reachable by mixing the policies
    best = frontier_at(points_kl, points_gold, budgets)  # per budget, nan below the first KL
    verdict = dominance(first - second, margin)  # [seeds, budgets] -> first/second/cross/none
    chosen = frontier_vertices(points, start_gold, budgets)  # to measure again, fresh
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from alignax.analysis import plots
from alignax.analysis.report import table
from alignax.analysis.stats import interval_text, mean_interval


def upper_envelope(kl, gold) -> tuple[np.ndarray, np.ndarray]:
    """The upper concave envelope of the points (kl_i, gold_i): its vertices by increasing KL.

    Answering each prompt with policy 1 with probability lam and policy 2 otherwise gives gold
    lam g1 + (1 - lam) g2 at KL at most lam KL1 + (1 - lam) KL2 (KL is convex), so every point
    of the envelope is reached or beaten by a mixture of a method's runs. Negative KL estimates
    (Monte Carlo noise around 0) count as 0.
    """
    kl = np.maximum(np.asarray(kl, np.float64), 0.0)
    gold = np.asarray(gold, np.float64)
    if kl.shape != gold.shape or kl.size == 0:
        raise ValueError(f"upper_envelope: kl {kl.shape} and gold {gold.shape}, non-empty")
    hull: list[tuple[float, float]] = []
    for i in np.lexsort((-gold, kl)):  # by KL; at equal KL the highest gold first
        x, y = float(kl[i]), float(gold[i])
        if hull and hull[-1][0] == x:
            continue
        # Drop the last vertex while it lies on or below the chord from the one before to here.
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = hull[-2], hull[-1]
            if (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0:
                hull.pop()
            else:
                break
        hull.append((x, y))
    vertices = np.array(hull)
    return vertices[:, 0], vertices[:, 1]


def frontier_at(kl, gold, budgets) -> np.ndarray:
    """The best gold within each KL budget B on the upper envelope of the points: the envelope's
    maximum over KL <= B (linear between vertices). Beyond the largest KL of the points this is
    the envelope's maximum (more budget cannot hurt); below the smallest KL it is undefined
    (nan)."""
    x, y = upper_envelope(kl, gold)
    peak = int(np.argmax(y))  # the envelope is concave: rising up to here, falling after
    out = []
    for budget in np.asarray(budgets, np.float64):
        if budget < x[0]:
            out.append(np.nan)
        elif budget >= x[peak]:
            out.append(y[peak])
        else:
            out.append(np.interp(budget, x[: peak + 1], y[: peak + 1]))
    return np.array(out)


def first_crossing(kl: Sequence[float], budget: float) -> tuple[int, float] | None:
    """Where a path of KL values (in training order) first reaches `budget`: (i, t) with the
    budget t of the way from point i to point i + 1; None when it never does. The path itself,
    not an envelope: a later dip below the budget is not read."""
    for i, (a, b) in enumerate(zip(kl, kl[1:])):
        if a < budget <= b:
            return i, (budget - a) / (b - a)
    return None


def at_kl(points: list[dict], budget: float) -> dict | None:
    """A run read at a KL budget: where its trajectory (points {'kl', 'step', 'gold_reward',
    'objectives'} in training order, the first the start at KL 0) first reaches `budget`, each
    value linear between the two points around it; None when it never does (`first_crossing`)."""
    crossing = first_crossing([p["kl"] for p in points], budget)
    if crossing is None:
        return None
    i, t = crossing
    a, b = points[i], points[i + 1]
    return {
        "step": a["step"] + t * (b["step"] - a["step"]),
        "objectives": [x + t * (y - x) for x, y in zip(a["objectives"], b["objectives"])],
        "gold_reward": a["gold_reward"] + t * (b["gold_reward"] - a["gold_reward"]),
    }


def matched_kl_gold(paths: dict[str, list[dict]]) -> dict:
    """Two runs compared at the same distance from their start: each path ({'kl', 'gold'} points
    in training order from the start at KL 0) read at the smaller of the two final KLs. The run
    that ends there is read at its end (measured, not interpolated); the other where its path
    first reaches that KL, linear between its checkpoints (`first_crossing`), or at its start
    when the budget is at or below 0. Returns {'kl': that budget, name: gold there, ...}."""
    budget = min(path[-1]["kl"] for path in paths.values())
    out = {"kl": budget}
    for name, path in paths.items():
        if path[-1]["kl"] == budget:
            out[name] = path[-1]["gold"]
            continue
        crossing = first_crossing([p["kl"] for p in path], budget)
        if crossing is None:
            out[name] = path[0]["gold"]
        else:
            i, t = crossing
            out[name] = path[i]["gold"] + t * (path[i + 1]["gold"] - path[i]["gold"])
    return out


def difference_intervals(first, second) -> list[tuple[float, float]]:
    """(mean, 95% t half-width) over seeds of first - second at each budget; inputs
    [seeds, budgets], paired by seed (same SFT policy, pairs and reward model)."""
    diff = np.asarray(first, np.float64) - np.asarray(second, np.float64)
    return [mean_interval(diff[:, j]) for j in range(diff.shape[1])]


def dominance(differences, margin: float, confidence: float = 0.95) -> str:
    """The rule that decides between two frontiers from `differences` [seeds, budgets], first -
    second per seed at the budgets where both are defined (paired by seed):
      'first' : non-inferior at every budget (the `confidence` t-interval's lower end above
                -`margin`) and superior at one budget or more (the lower end of the interval at
                1 - (1 - confidence) / budgets, Bonferroni over the budgets, above 0);
      'second': the same with the roles swapped;
      'cross' : superior (corrected) at some budget and inferior (corrected) at another;
      'none'  : otherwise (not separated by this many seeds, or no budget to compare).
    With one seed no interval is defined: 'none'."""
    diff = np.asarray(differences, np.float64)
    if diff.ndim != 2 or diff.shape[1] == 0 or diff.shape[0] < 2:
        return "none"
    budgets = diff.shape[1]
    corrected = 1.0 - (1.0 - confidence) / budgets
    plain = [mean_interval(diff[:, j], confidence) for j in range(budgets)]
    strict = [mean_interval(diff[:, j], corrected) for j in range(budgets)]
    above = any(m - h > 0 for m, h in strict)
    below = any(m + h < 0 for m, h in strict)
    if above and below:
        return "cross"
    if above and all(m - h > -margin for m, h in plain):
        return "first"
    if below and all(m + h < margin for m, h in plain):
        return "second"
    return "none"


def peak_and_final(points: list[dict]) -> tuple[dict, dict]:
    """The evaluated step with the highest gold (the first of equals) and the last one."""
    gold = [p["gold"] for p in points]
    return points[int(np.argmax(gold))], points[-1]


def method_frontiers(
    methods: dict[str, list[str]], trajectories: list[dict], start_gold: list[float], budgets
) -> dict:
    """Per method ({method: its run names}), from every seed's `trajectories` ({run name: its
    evaluations, points with kl and gold}) and the gold of the policy every run starts from
    (KL 0, one per seed): the envelope points and the frontier at `budgets` per seed, whether
    every seed's runs reached each budget, and the mean over seeds with its 95% interval."""
    budgets = list(budgets)
    out = {}
    for method, names in methods.items():
        values, reached, envelopes = [], [], []
        for runs, start in zip(trajectories, start_gold):
            points = [p for n in names for p in runs[n]]
            kl, gold = [0.0] + [p["kl"] for p in points], [start] + [p["gold"] for p in points]
            values.append(frontier_at(kl, gold, budgets).tolist())
            reached.append([max(kl) >= b for b in budgets])
            envelopes.append([list(v) for v in upper_envelope(kl, gold)])
        out[method] = {
            "runs": names,
            "budgets": budgets,
            "per_seed": values,
            "reached": np.all(reached, axis=0).tolist(),
            "interval": [mean_interval(np.array(values)[:, j]) for j in range(len(budgets))],
            "envelopes": envelopes,
        }
    return out


def endings(methods: dict[str, list[str]], trajectories: list[dict], fields) -> dict:
    """Per method, the last evaluation of its runs (mean over its runs per seed, then over seeds
    with a 95% interval) of each of `fields`: how its policies end, next to the frontier that
    does not show it."""
    out = {}
    for method, names in methods.items():
        per_seed = [
            {k: np.mean([runs[n][-1][k] for n in names]) for k in fields} for runs in trajectories
        ]
        out[method] = {k: mean_interval([row[k] for row in per_seed]) for k in fields}
    return out


def comparisons(front: dict, margin: float) -> dict:
    """Every ordered pair of `method_frontiers`: first - second at each budget where both are
    defined in every seed (a method whose runs stopped short of a budget counts with its best
    gold within it: what it reached), their 95% intervals, and the verdict of `dominance` with
    non-inferiority margin `margin`."""
    out = {}
    for a in front:
        for b in front:
            if a == b:
                continue
            values = np.asarray(front[a]["per_seed"]) - np.asarray(front[b]["per_seed"])
            both = [i for i in range(values.shape[1]) if np.all(np.isfinite(values[:, i]))]
            out[f"{a} vs {b}"] = {
                "budgets_compared": [front[a]["budgets"][i] for i in both],
                "difference": difference_intervals(front[a]["per_seed"], front[b]["per_seed"]),
                "verdict": dominance(values[:, both], margin),
            }
    return out


def dominant(front: dict, pairs: dict) -> list[str]:
    """The methods whose frontier dominates every other method's (`comparisons`' verdicts)."""
    return [
        a for a in front if all(pairs[f"{a} vs {b}"]["verdict"] == "first" for b in front if b != a)
    ]


def frontier_vertices(points: list[dict], start_gold: float, budgets) -> list[dict]:
    """The `points` (dicts with kl and gold, any other keys kept) that are vertices of the upper
    envelope of them and the start (KL 0, `start_gold`) and that the frontier at `budgets`
    reads: every vertex up to the largest budget and the first one past it. A frontier read
    from these points' own evaluations is a maximum over noisy numbers (biased up): measure the
    vertices again on fresh prompts and read the frontier from those measurements."""
    kl = [0.0] + [p["kl"] for p in points]
    x, y = upper_envelope(kl, [start_gold] + [p["gold"] for p in points])
    past = x[x > max(budgets)]
    limit = past.min() if len(past) else np.inf
    vertices = {(float(a), float(b)) for a, b in zip(x, y) if a <= limit}
    return [p for p in points if (max(float(p["kl"]), 0.0), float(p["gold"])) in vertices]


def fresh_vertices(
    sets: dict, trajectories: dict, start_gold: float, budgets, measure: Callable
) -> dict:
    """For each set of `sets` ({set: {method: the names of its runs}}), {method: its frontier
    vertices (`frontier_vertices` of those runs' `trajectories` and the start at KL 0)}, each
    with run, step, the in-run kl and gold and the fresh ones (`fresh_kl`, `fresh_gold`: the
    means of `measure(run, steps) -> {str(step): {'kl': [...], 'gold': [...]}}`, a checkpoint
    in several sets measured once). `measure` should use one fresh draw of prompts and one
    sampling key for every run, so that the vertices pair prompt by prompt."""
    out: dict[str, dict] = {}
    for label, methods in sets.items():
        out[label] = {}
        for method, names in methods.items():
            points = [{**p, "run": n} for n in names for p in trajectories[n]]
            out[label][method] = frontier_vertices(points, start_gold, budgets)
    by_run: dict[str, list[dict]] = {}
    for v in (v for chosen in out.values() for vertices in chosen.values() for v in vertices):
        by_run.setdefault(v["run"], []).append(v)
    for name, vertices in by_run.items():
        measured = measure(name, sorted({v["step"] for v in vertices}))
        for v in vertices:
            v["fresh_kl"] = float(np.mean(measured[str(v["step"])]["kl"]))
            v["fresh_gold"] = float(np.mean(measured[str(v["step"])]["gold"]))
    return out


# ---------------------------------------------------------------------------------------------
# The DPO-frontier study (experiments/dpo_frontier.py): its frontiers over seeds, the
# over-optimisation turn-over, the tables and the figures.


def start_gold(seeds: dict) -> list[float]:
    """Each seed's SFT policy's gold, measured once (the over-optimisation re-evaluation's)."""
    return [r["overoptimization"]["reevaluated"]["sft_gold"] for r in seeds.values()]


def fresh_frontiers(budgets, seeds: dict, key: str, methods: dict[str, list[str]]) -> dict:
    """`method_frontiers` read from each seed's vertices under `key` as measured on the fresh
    draw (each method's own "run"), with the names of the runs they come from (`methods`)."""
    fresh = [
        {m: [{"kl": v["fresh_kl"], "gold": v["fresh_gold"]} for v in vs] for m, vs in r.items()}
        for r in (s[key] for s in seeds.values())
    ]
    front = method_frontiers({m: [m] for m in methods}, fresh, start_gold(seeds), budgets)
    for method, f in front.items():
        f["runs"] = methods[method]
    return front


def turnover(seeds: dict) -> dict:
    """Peak minus final gold of the long DPO run, re-evaluated on fresh prompts: mean over seeds
    with the 95% t-interval; it turns over when the interval lies above 0. Also counted: the
    seeds whose own drop lies above 0 by more than 1.96 SE over prompts."""
    drops = [r["overoptimization"]["reevaluated"] for r in seeds.values()]
    mean, half = mean_interval([d["drop"] for d in drops])
    return {
        "drop": mean,
        "drop_interval": half,
        "turns_over": bool(mean - half > 0),
        "seeds_turning_over": sum(d["drop"] - 1.96 * d["drop_se"] > 0 for d in drops),
    }


def frontier_results(config, methods: dict, equal_methods: dict, seeds: dict, fields) -> dict:
    """The DPO-frontier study's results across `seeds` (each seed's trajectories, vertices and
    over-optimisation result): every method's frontier at `config.budgets`, read from the
    in-run evaluations and from the vertices measured again on the fresh draw, their pairwise
    comparisons with margin `config.non_inferiority_margin` and the dominant methods, the same
    at the equal tuning budget (`equal_methods`, one run per method), how each method's runs
    end (the last evaluation's `fields`) and the over-optimisation turn-over. `methods`:
    {method: the names of its runs}."""
    budgets, margin = config.budgets, config.non_inferiority_margin
    trajectories = [r["trajectories"] for r in seeds.values()]
    in_run = method_frontiers(methods, trajectories, start_gold(seeds), budgets)
    front = fresh_frontiers(budgets, seeds, "vertices", methods)
    pairs = comparisons(front, margin)
    equal = fresh_frontiers(budgets, seeds, "equal_budget_vertices", equal_methods)
    equal_pairs = comparisons(equal, margin)
    return {
        "seeds": seeds,
        "frontiers": front,
        "in_run_frontiers": in_run,
        "comparisons": pairs,
        "endings": endings(methods, trajectories, fields),
        "dominant": dominant(front, pairs),
        "equal_budget": {
            "frontiers": equal,
            "comparisons": equal_pairs,
            "dominant": dominant(equal, equal_pairs),
        },
        "overoptimization": turnover(seeds),
    }


def turnover_table(seeds: dict, steps_per_epoch: float) -> list[str]:
    """Markdown rows: per seed, the long DPO run's peak (in epochs), its KL and gold at the peak
    and at the end re-evaluated on fresh prompts, the SFT policy's gold and the paired drop."""
    rows = []
    for seed, result in seeds.items():
        o = result["overoptimization"]
        r = o["reevaluated"]
        rows.append(
            [seed, f"{o['peak']['step'] / steps_per_epoch:.2f}"]
            + [f"{r[k]:.1f}" for k in ("peak_kl", "final_kl")]
            + [f"{r[k]:.2f}" for k in ("sft_gold", "peak_gold", "final_gold")]
            + [f"{r['drop']:.2f} ± {1.96 * r['drop_se']:.2f}"]
        )
    header = ["seed", "peak epoch", "KL at peak", "final KL", "gold: SFT", "peak", "final"]
    return table([*header, "peak - final (± 1.96 SE over prompts)"], rows)


def difference_table(front: dict, pairs: dict, reference: str) -> list[str]:
    """Markdown rows: `reference` minus each other method at every budget, and the verdict."""
    budgets = front[reference]["budgets"]
    names = {
        "first": f"{reference} dominates",
        "second": f"{reference} dominated",
        "cross": "cross",
        "none": "not separated",
    }
    rows = []
    for other in front:
        if other != reference:
            pair = pairs[f"{reference} vs {other}"]
            cells = [
                interval_text(d, 2) if b in pair["budgets_compared"] else "-"
                for b, d in zip(budgets, pair["difference"])
            ]
            rows.append([other, *cells, names[pair["verdict"]]])
    return table([f"{reference} minus", *(f"KL ≤ {b:g}" for b in budgets), "verdict"], rows)


def frontier_table(front: dict, budgets: list) -> list[str]:
    """Markdown rows: each method's runs and best gold within every budget (* not reached)."""
    rows = [
        [method, len(f["runs"])]
        + [interval_text(v, 2) + ("" if ok else " *") for v, ok in zip(f["interval"], f["reached"])]
        for method, f in front.items()
    ]
    return table(["method", "runs", *(f"KL ≤ {b:g}" for b in budgets)], rows)


# The palette without its yellow (faint on white), then grey and wine (Tol's muted scheme): nine
# methods, one colour each; PPO's frontiers dashed.
COLORS = tuple(c for c in plots.PALETTE if c != "#F0E442") + ("#999999", "#882255")


def _style(i: int, method: str) -> dict:
    """A method's colour and marker; PPO's frontiers dashed."""
    markers = "osD^vP*Xh"
    return {
        "color": COLORS[i % len(COLORS)],
        "marker": markers[i % len(markers)],
        "linestyle": "--" if method.startswith("PPO") else "-",
    }


def figures(config, methods: dict, seeds: dict, in_run: dict, front: dict, workdir) -> None:
    """The DPO-frontier study's figures in <workdir>/figures. `frontier`: left, one seed's in-run
    evaluations and envelopes; right, the frontiers read from the vertices measured again on
    fresh prompts, over seeds. `dpo_betas`: DPO along training by beta. `overoptimization`: the
    long DPO run's gold against KL and epochs. `methods`: {method: the names of its runs}."""
    seed0 = next(iter(seeds))
    fig, (left, right) = plots.subplots(1, 2, figsize=(10, 3.8))
    for i, method in enumerate(front):
        style = _style(i, method)
        points = [p for name in methods[method] for p in seeds[seed0]["trajectories"][name]]
        left.scatter(
            [max(p["kl"], 0.0) for p in points],
            [p["gold"] for p in points],
            s=9,
            alpha=0.45,
            color=style["color"],
            marker=style["marker"],
        )
        x, y = in_run[method]["envelopes"][0]
        left.plot(x, y, color=style["color"], linestyle=style["linestyle"], label=method)
        x = np.array(config.budgets) * (1 + 0.03 * (i - len(front) / 2))
        plots.intervals(
            right, x, front[method]["interval"], markersize=4, linewidth=1, label=method, **style
        )
    cut = 2 * max(config.budgets)
    left.set_xlim(-0.02 * cut, cut)
    left.set(
        xlabel=f"KL(pi || pi_SFT) (nats, held-out prompts; axis cut at {cut:g})",
        ylabel="gold reward",
        title=f"In-run evaluations and envelopes (seed {seed0})",
    )
    right.set_xscale("log", base=2)
    right.set(
        xlabel="KL budget (nats)",
        ylabel=f"best gold within budget (mean, 95% CI, {len(seeds)} seed(s))",
        title="Frontier at fixed KL budgets (vertices measured again, fresh prompts)",
    )
    right.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    plots.save(fig, workdir / "figures" / "frontier")

    # DPO's trajectories by beta, every seed.
    fig, ax = plots.subplots(figsize=(5.2, 3.6))
    for i, name in enumerate(methods["DPO"]):
        for j, result in enumerate(seeds.values()):
            points = result["trajectories"][name]
            ax.plot(
                [0.0] + [max(p["kl"], 0.0) for p in points],
                [result["overoptimization"]["reevaluated"]["sft_gold"]]
                + [p["gold"] for p in points],
                "-o",
                markersize=2,
                linewidth=0.8,
                alpha=0.8,
                color=COLORS[i % len(COLORS)],
                label=name.replace("dpo_", "DPO ").replace("beta", "beta ") if j == 0 else None,
            )
    ax.set(
        xlabel="KL(pi || pi_SFT) (nats)",
        ylabel="gold reward",
        title="DPO along training, by beta (one line per seed)",
    )
    ax.legend()
    plots.save(fig, workdir / "figures" / "dpo_betas")

    # Over-optimisation: gold against KL and against epochs along the long run.
    over = config.overoptimization
    steps_per_epoch = config.offline.pairs.num_pairs / config.offline.train.batch_size
    fig, (left, right) = plots.subplots(1, 2, figsize=(9, 3.4))
    for j, (seed, result) in enumerate(seeds.items()):
        o = result["overoptimization"]
        color = plots.series_color(j)
        kl = [max(p["kl"], 0.0) for p in o["points"]]
        gold = [p["gold"] for p in o["points"]]
        epochs = [p["step"] / steps_per_epoch for p in o["points"]]
        left.plot(kl, gold, "-o", markersize=2, color=color, label=f"seed {seed}")
        right.plot(epochs, gold, "-o", markersize=2, color=color, label=f"seed {seed}")
        for ax, x in ((left, kl), (right, epochs)):
            i = o["points"].index(o["peak"])
            ax.plot([x[i]], [gold[i]], "*", markersize=9, color=color)
    left.set(xlabel="KL(pi || pi_SFT) (nats)", ylabel="gold reward", title="Gold against KL")
    right.set(xlabel="epochs over the pairs", ylabel="gold reward", title="Gold along training")
    for ax in (left, right):
        ax.legend()
    fig.suptitle(
        f"DPO, beta {over.beta:g}, {over.steps / steps_per_epoch:g} epochs (star: peak)", y=1.03
    )
    plots.save(fig, workdir / "figures" / "overoptimization")
