"""Policies measured along their training runs and compared at equal KL to the SFT policy.

Every run's checkpoints answer one fresh draw of held-out prompts with one sampling key
(`measure_checkpoints`, cached per seed by `measured_policies`); per seed, every point's gold,
length, KL and diversity against the SFT policy (`policy_table`) and each line's cross-fitted
peak and fall (`peaks_and_falls`); per method (the line through its runs' points), gold and
length read at KL budgets, and paired differences between methods over the seeds that reach a
budget (`policy_results`). The length-bias, ensemble (PPO half) and online-offline studies
compare their methods this way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignax.analysis import plots
from alignax.analysis.policy_eval import on_fresh_draw, versus_sft
from alignax.analysis.stats import (
    cross_fitted_peak,
    interval_text,
    interval_verdict,
    mean_interval,
    seed_means,
)
from alignax.checkpoint import restore_params
from alignax.sharding import make_mesh
from alignax.stages import load_stage_model
from alignax.tasks import get_task
from alignax.workdir import cached_arrays, stage_fingerprint

DIVERSITY = ("entropy", "distinct_2", "self_bleu")
# What `measure_checkpoints` keeps of every point's answers.
MEASURED = ("gold", "length", "kl", "ended_with_eos", *DIVERSITY)


def measure_checkpoints(
    config,
    seed: int,
    seed_dir: Path,
    points: dict[str, tuple[str, int]],
    *,
    num_prompts: int,
    max_new_tokens: int,
) -> dict[str, np.ndarray]:
    """The SFT policy (stage `sft` of `seed_dir`) and every point of `points` ({name: (stage,
    step)}: that stage's checkpoint at that step) answer one fresh draw of `num_prompts`
    held-out prompts with one sampling key: `policy/<name>/<gold|length|kl|ended_with_eos|
    entropy>` per prompt (KL to the SFT policy), and the batch's `distinct_2` and `self_bleu`
    (alignax/analysis/diversity.py). A PPO stage's checkpoints hold its policy beside its value
    model (`checkpoint.restore_params` reads the policy)."""
    task, mesh = get_task(config.task_name, config.task), make_mesh(config.mesh)
    model, sft_params = load_stage_model(seed_dir / "sft", heads=("lm",), mesh=mesh)

    policies = {"sft": sft_params} | {
        point: restore_params(seed_dir / stage / "checkpoints", sft_params, step=step)
        for point, (stage, step) in points.items()
    }
    answers = on_fresh_draw(
        model, policies, sft_params, task, seed=seed, num_prompts=num_prompts,
        max_new_tokens=max_new_tokens, monitor=True,
    )  # fmt: skip
    return {
        f"policy/{name}/{key}": np.asarray(r[key], np.float64)
        for name, r in answers.items()
        for key in MEASURED
    }


def measured_policies(
    config,
    seed: int,
    seed_dir: Path,
    points: dict[str, tuple[str, int]],
    *,
    measure,
    section: str = "measure",
    also: tuple[str, ...] = (),
) -> dict[str, np.ndarray]:
    """`measure_checkpoints` of `points` with the `measure` section's `num_prompts` and
    `max_new_tokens`, cached in <seed_dir>/policies.npz for exactly that section (its config
    key `section`), seed and the checkpoints of the SFT stage, the points' stages and the stages
    of `also` (their fingerprints)."""
    stages = ["sft", *sorted({stage for stage, _ in points.values()}), *also]
    key = {
        section: measure.to_dict(),
        "stages": {name: stage_fingerprint(seed_dir / name) for name in stages},
        "seed": seed,
        "measured": list(MEASURED),
    }
    return cached_arrays(
        seed_dir / "policies.npz",
        key,
        lambda: measure_checkpoints(
            config,
            seed,
            seed_dir,
            points,
            num_prompts=measure.num_prompts,
            max_new_tokens=measure.max_new_tokens,
        ),  # fmt: skip
    )


def peak_and_fall(gold_CxP: np.ndarray) -> dict[str, float]:
    """A run's peak gold over its trajectory (row 0 its start; `stats.cross_fitted_peak` over
    the checkpoints, chosen on one half of the prompts and read on the other) and its fall from
    the peak to the end, the end read on the same halves."""
    peak = cross_fitted_peak(gold_CxP.T)
    end = np.mean([gold_CxP[-1, 0::2].mean(), gold_CxP[-1, 1::2].mean()])
    return {"peak": peak, "fall": float(peak - end)}


def peaks_and_falls(measured: dict, lines: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """One seed: {line: its final gold ('end'), cross-fitted 'peak' and 'fall'} from the SFT
    policy's and the line's points' gold per prompt (`lines`: each line's points in order)."""
    out = {}
    for line, names in lines.items():
        gold_CxP = np.stack([measured[f"policy/{name}/gold"] for name in ["sft", *names]])
        out[line] = peak_and_fall(gold_CxP) | {"end": float(gold_CxP[-1].mean())}
    return out


# The columns of the policy runs' table: {`policy_table` key: its header}.
POLICY_COLUMNS = {
    "kl_to_sft": "KL to SFT",
    "gold_reward": "gold",
    "response_length": "length",
    "gold_length_controlled": "gold at the SFT policy's length",
    "entropy": "entropy (nats/token)",
    "distinct_2": "distinct-2",
    "self_bleu": "self-BLEU",
}


ENDS = ("end", "peak", "fall")


def end_results(ends: dict, pairs: dict[str, tuple[str, str]], policies: dict) -> dict:
    """Over seeds, from each seed's `peaks_and_falls` ({seed: {line: ...}}): each line's mean
    end, peak and fall ('per_line'), line a minus line b of each `pairs` label, paired within
    seeds ('differences'), and the answers: a higher or lower end and peak, a larger or smaller
    fall, and gold at the KL budgets from `policies` (`policy_results` of the same pairs)."""
    lines = next(iter(ends.values()))
    per_line = {
        line: {k: mean_interval([e[line][k] for e in ends.values()]) for k in ENDS}
        for line in lines
    }
    differences = {
        label: {k: mean_interval([e[a][k] - e[b][k] for e in ends.values()]) for k in ENDS}
        for label, (a, b) in pairs.items()
    }
    answers = {
        label: {
            "end": interval_verdict(d["end"], "higher", "lower"),
            "fall": interval_verdict(d["fall"], "larger", "smaller"),
            "peak": interval_verdict(d["peak"], "higher", "lower"),
            "at_budgets": policies["answers"][label]["gold"],
        }
        for label, d in differences.items()
    }
    return {"per_line": per_line, "differences": differences, "answers": answers}


def end_summary(answers: dict, per_line: dict) -> dict:
    """A study's summary of `end_results`: every answer but the per-budget ones
    ('answer/<label>/<criterion>') and each line's mean final gold ('final_gold/<line>')."""
    return {
        **{
            f"answer/{label}/{k}": v
            for label, criteria in answers.items()
            for k, v in criteria.items()
            if k != "at_budgets"
        },
        **{f"final_gold/{line}": v["end"][0] for line, v in per_line.items()},
    }


# The columns of `end_row`: a run's policy at its end, beside its peak and fall.
END_COLUMNS = ("final KL", "final gold", "peak gold", "fall from the peak", "final length")
END_COLUMNS += ("entropy", "self-BLEU")


def end_row(end: dict, ends: dict) -> list[str]:
    """A run's `END_COLUMNS` cells: its last point's mean row (`policy_results` 'runs'), and its
    line's mean end, peak and fall (`end_results` 'per_line')."""
    return [
        interval_text(end["kl_to_sft"], 1),
        *(interval_text(ends[k]) for k in ENDS),
        interval_text(end["response_length"], 1),
        interval_text(end["entropy"]),
        interval_text(end["self_bleu"]),
    ]


def sft_end_row(sft: dict) -> list[str]:
    """The SFT policy's `END_COLUMNS` cells: KL 0, its gold, no peak or fall."""
    return [
        "0",
        interval_text(sft["gold_reward"]),
        "-",
        "-",
        interval_text(sft["response_length"], 1),
    ] + [interval_text(sft[k]) for k in ("entropy", "self_bleu")]


def policy_table(measured: dict, names: list[str]) -> dict[str, dict[str, float]]:
    """One seed: `policy_eval.versus_sft` of the SFT policy and every run of `names`, from their
    answers to one fresh draw (`policy/<name>/<gold|length|kl|ended_with_eos>`), with their
    diversity (`DIVERSITY`: mean per-token entropy, distinct-2 and self-BLEU of the batch)."""
    everyone = ["sft", *names]
    results = {
        name: {
            key: measured[f"policy/{name}/{key}"]
            for key in ("gold", "length", "kl", "ended_with_eos")
        }
        for name in everyone
    }
    table = versus_sft(results)
    for name in everyone:
        table[name] |= {k: float(np.mean(measured[f"policy/{name}/{k}"])) for k in DIVERSITY}
    return table


def at_kl_budgets(table: dict, runs: dict[str, list[str]], budgets) -> dict:
    """One seed: each method's gold and length at every KL budget, read off the line through
    its runs' (`runs[method]`, stages of `table`) points and the SFT policy's (KL 0), sorted by
    KL; nan where a budget lies beyond the method's largest KL."""
    out = {}
    for method, stages in runs.items():
        rows = sorted([table["sft"], *(table[s] for s in stages)], key=lambda r: r["kl_to_sft"])
        kl = np.array([r["kl_to_sft"] for r in rows])
        out[method] = {
            metric: [
                float(np.interp(b, kl, [r[key] for r in rows])) if b <= kl.max() else float("nan")
                for b in budgets
            ]
            for metric, key in (("gold", "gold_reward"), ("length", "response_length"))
        }
    return out


def defined_interval(values) -> tuple[float, float, int]:
    """(mean, 95% t half-width, count) over the values that are defined (not nan)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    return (*mean_interval(v), len(v))


def budget_differences(seeds: list[dict], pairs: dict[str, tuple[str, str]], budgets) -> dict:
    """{label: {metric: [(mean, half, seeds) per budget]}} of method a minus method b for each
    `pairs` label (a, b), paired within the seeds where both are defined at the budget."""
    return {
        label: {
            metric: [
                defined_interval([t[a][metric][i] - t[b][metric][i] for t in seeds])
                for i in range(len(budgets))
            ]
            for metric in ("gold", "length")
        }
        for label, (a, b) in pairs.items()
    }


def policy_results(tables: dict, methods: dict[str, list[str]], budgets, pairs: dict) -> dict:
    """Over seeds, from each seed's `policy_table` ({seed: table}): every point's
    mean ('runs'), each method's gold and length at the KL budgets per seed ('at_budgets') and
    over the seeds that reach them ('methods'), the paired differences of `pairs` ({label: (a,
    b)}) and their verdicts ('answers': longer / shorter, higher / lower gold)."""
    at_budgets = {seed: at_kl_budgets(t, methods, budgets) for seed, t in tables.items()}
    differences = budget_differences(list(at_budgets.values()), pairs, budgets)

    def verdict(value, above: str, below: str) -> str:
        mean, half, count = value
        return interval_verdict((mean, half), above, below) if count >= 2 else "too few seeds"

    return {
        "seeds": tables,
        "at_budgets": at_budgets,
        "runs": seed_means(tables),
        "methods": {
            m: {
                metric: [
                    defined_interval([t[m][metric][i] for t in at_budgets.values()])
                    for i in range(len(budgets))
                ]
                for metric in ("gold", "length")
            }
            for m in methods
        },
        "differences": differences,
        "answers": {
            label: {
                "length": [verdict(v, "longer", "shorter") for v in d["length"]],
                "gold": [verdict(v, "higher gold", "lower gold") for v in d["gold"]],
            }
            for label, d in differences.items()
        },
    }


def budget_cell(value) -> str:
    """A `defined_interval` (mean, half, seeds) as 'mean ± half (seeds)'."""
    mean, half, count = value
    return f"{interval_text((mean, half), 2, signed=True)} ({count})" if count else "- (0)"


def policy_figure(
    combined: dict,
    runs: dict[str, list[str]],
    labels: dict,
    budgets,
    title: str,
    path: Path,
):
    """`path`.{png,pdf}: every method's line through its points (`runs`) and the SFT policy's,
    gold and length against KL to the SFT policy (mean over seeds, 95% t-intervals), KL on a
    scale linear below 1 nat and logarithmic above, the KL budgets dotted."""
    fig, axes = plots.subplots(1, 2, figsize=(9.6, 3.6))
    for ax in axes:
        ax.set_xscale("symlog", linthresh=1.0)
        for budget in budgets:
            ax.axvline(budget, color="0.75", linestyle=":", linewidth=0.8)
    sft = combined["sft"]
    for i, (method, stages) in enumerate(runs.items()):
        rows = sorted([sft, *(combined[s] for s in stages)], key=lambda r: r["kl_to_sft"][0])
        kl = [r["kl_to_sft"] for r in rows]
        for ax, metric in zip(axes, ("gold_reward", "response_length"), strict=True):
            plots.intervals(
                ax,
                [m for m, _ in kl],
                [r[metric] for r in rows],
                xerr=np.nan_to_num([h for _, h in kl]),
                fmt="o-",
                markersize=3,
                color=plots.series_color(i),
                label=labels.get(method, method),
            )
    axes[0].set(xlabel="KL to the SFT policy (nats)", ylabel="gold reward")
    axes[1].set(xlabel="KL to the SFT policy (nats)", ylabel="response length (tokens)")
    axes[0].legend(fontsize=6)
    fig.suptitle(title)
    return plots.save(fig, path)
