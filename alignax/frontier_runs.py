"""The DPO-frontier study's machinery (experiments/dpo_frontier.py): the runs of one seed, the
stage config of each, the pairs the DPO-family runs share, and what a run measured.

A study that uses it has the config sections `offline` (the DPO-family runner template), `kto`,
`rl` (`ppo`, the PPO template; `kl_targets`, `reward_sources`), `dpo_betas`, `variants`,
`overoptimization`, `equal_budget` and `budgets`; every run starts from the seed's SFT policy in
<seed_dir>/sft (and PPO against the model reward from <seed_dir>/reward_model):

    runs = runs_of(config)                          # every run of one seed, in training order
    check_same_data(config)                         # every method learns from the same data
    stage = run_config(config, runs[0], seed, seed_dir)  # its runner config, links set
    points = trajectory(seed_dir / run.name, run.runner)  # its in-run evaluations
    over = overoptimization_seed(config, task, mesh, seed, seed_dir, long_run)  # peak vs final
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import ml_collections
import numpy as np

from alignax.analysis.frontier import peak_and_final
from alignax.analysis.policy_eval import on_fresh_prompts
from alignax.analysis.stats import standard_error
from alignax.metrics import logged_curve
from alignax.sharding import make_mesh
from alignax.stages import SHARED_SECTIONS, stage_config
from alignax.study import check_every_checkpoint_kept, made_once
from alignax.workflows import ppo, preference, unpaired

RUNNERS = {"dpo": preference, "kto": unpaired, "ppo": ppo}
# Where each runner logs its evaluation: the metric prefix of gold, its SE and the KL.
EVAL_PREFIX = {"dpo": "eval/policy/", "kto": "eval/policy/", "ppo": "eval/"}
REWARD_SOURCES = {"model": "PPO (RM)", "gold": "PPO (gold)"}
# Keys that must equal factor x another key: every method learns from the same data.
SAME_DATA = {
    "kto.pairs.num_pairs": ("offline.pairs.num_pairs", 1),
    "kto.train.batch_size": ("offline.train.batch_size", 2),
    "kto.train.steps": ("offline.train.steps", 1),
    "kto.eval.num_prompts": ("offline.eval.num_prompts", 1),
    "stages.reward_model.pairs.num_pairs": ("offline.pairs.num_pairs", 1),
    "rl.ppo.eval.num_prompts": ("offline.eval.num_prompts", 1),
}

# ---------------------------------------------------------------------------------------------
# The runs of one seed.


@dataclasses.dataclass(frozen=True)
class Run:
    name: str  # directory under seed<k>/
    method: str  # the frontier it belongs to
    runner: str  # "dpo" | "kto" | "ppo"
    overrides: tuple[tuple[str, object], ...]  # (dotted key, value) set on the runner template
    frontier_steps: int | None = None  # evaluations past this step are not frontier points
    equal_budget: bool = True  # in the comparison at one setting per method (`equal_budget`)


def runs_of(config) -> list[Run]:
    """Every run of one seed, in the order they are trained."""
    offline_steps = config.offline.train.steps
    over = config.overoptimization
    if over.beta not in config.dpo_betas:
        raise ValueError(
            f"overoptimization.beta={over.beta} must be one of dpo_betas={config.dpo_betas}: "
            "its first offline.train.steps steps are that beta's frontier run"
        )
    if over.steps < offline_steps:
        raise ValueError(
            f"overoptimization.steps={over.steps} is shorter than offline.train.steps="
            f"{offline_steps}"
        )
    if config.offline.optimizer.schedule != "constant":
        raise ValueError(
            f"offline.optimizer.schedule={config.offline.optimizer.schedule!r}: must be "
            "'constant', so that the over-optimisation run's first offline.train.steps steps are "
            "the frontier run of its beta"
        )
    if over.steps % config.offline.train.eval_every:
        raise ValueError(
            f"overoptimization.steps={over.steps} must be a multiple of offline.train.eval_every="
            f"{config.offline.train.eval_every} (its final step is evaluated like the others)"
        )
    equal = config.equal_budget
    for key, value, swept in (
        ("dpo_beta", equal.dpo_beta, config.dpo_betas),
        ("ppo_kl_target", equal.ppo_kl_target, config.rl.kl_targets),
    ):
        if value not in swept:
            raise ValueError(f"equal_budget.{key}={value} must be one of the swept {tuple(swept)}")
    runs = []
    for beta in config.dpo_betas:
        overrides = [("loss.hyperparameters.beta", float(beta))]
        if beta == over.beta:
            overrides.append(("train.steps", over.steps))
        runs.append(
            Run(
                f"dpo_beta{beta:g}",
                "DPO",
                "dpo",
                tuple(overrides),
                offline_steps if beta == over.beta else None,
                equal_budget=beta == equal.dpo_beta,
            )
        )
    for key, variant in config.variants.items():
        runs.append(Run(key, variant.label, "dpo", (("loss", variant.loss),)))
    runs.append(Run("kto", "KTO", "kto", ()))
    for source in config.rl.reward_sources:
        if source not in REWARD_SOURCES:
            raise ValueError(f"rl.reward_sources: {source!r} is not one of {tuple(REWARD_SOURCES)}")
        for target in config.rl.kl_targets:
            runs.append(
                Run(
                    f"ppo_{source}_kl{target:g}",
                    REWARD_SOURCES[source],
                    "ppo",
                    (("rewards.source", source), ("ppo.kl_target", float(target))),
                    equal_budget=target == equal.ppo_kl_target,
                )
            )
    return runs


def method_runs(runs: list[Run]) -> dict[str, list[str]]:
    """{method: the names of its runs}, methods in the order their first run is trained."""
    out = {}
    for r in runs:
        out.setdefault(r.method, []).append(r.name)
    return out


def timing_key(run: Run) -> str:
    """The line of the wall-time report a run's seconds go to."""
    if run.runner == "ppo":
        return "ppo_" + dict(run.overrides)["rewards.source"]
    return {"DPO": "dpo"}.get(run.method, "variants" if run.runner == "dpo" else run.runner)


def check_same_data(config) -> None:
    """KTO sees the offline runs' pairs (each split in two), the same number of passes, the same
    sequences per step; the reward model learns from the same pairs (labels.comparisons draws
    the same ones for the same seed, number and labels section); every method is evaluated on
    as many held-out prompts."""

    def value(key: str):
        return functools.reduce(lambda node, part: node[part], key.split("."), config)

    for section in ("kto.labels", "stages.reward_model.labels"):
        labels = value(section)
        if labels.to_dict() != {
            **config.offline.labels.to_dict(),
            "policy_from": labels.policy_from,
        }:
            raise ValueError(f"{section} must equal offline.labels (the same annotator and pairs)")
    for key, (other, factor) in SAME_DATA.items():
        if value(key) != factor * value(other):
            times = f"{factor} x " if factor != 1 else ""
            raise ValueError(
                f"{key}={value(key)} must equal {times}{other}={factor * value(other)}"
            )


def run_config(config, run: Run, seed: int, seed_dir: Path) -> ml_collections.ConfigDict:
    """The runner config of `run` for `seed`: its template, the shared sections, the links to
    this seed's SFT policy (and reward model), and the run's overrides."""
    template = {"dpo": config.offline, "kto": config.kto, "ppo": config.rl.ppo}[run.runner]
    links = {"init_from": seed_dir / "sft"}
    if run.runner in ("dpo", "kto"):
        links["labels.policy_from"] = seed_dir / "sft"
    elif dict(run.overrides)["rewards.source"] == "model":
        links["rewards.reward_model_from"] = seed_dir / "reward_model"
    shared = tuple(k for k in SHARED_SECTIONS if k != "seed")
    out = stage_config(config, template, links, shared)
    with out.unlocked():
        out.seed = seed
        out.update_from_flattened_dict(
            {
                key: value.copy_and_resolve_references()
                if isinstance(value, ml_collections.ConfigDict)
                else value
                for key, value in run.overrides
            }
        )
    # Every evaluated step's checkpoint is kept: frontier vertices and the over-optimisation
    # peak are chosen on the in-run evaluations and measured again on fresh prompts.
    section = {"dpo": "offline", "kto": "kto", "ppo": "rl.ppo"}[run.runner] + ".train"
    if out.train.checkpoint_every != out.train.eval_every:
        raise ValueError(
            f"{section}.checkpoint_every={out.train.checkpoint_every} must equal "
            f"{section}.eval_every={out.train.eval_every}: every evaluated checkpoint is kept"
        )
    why = f"run {run.name} measures every evaluated step's policy again on fresh prompts"
    check_every_checkpoint_kept(out.train, section, why)
    return out


def labelled_pairs(stage_config) -> tuple:
    """(train, evaluation, task): the pairs of `stage_config`'s seed's SFT samples, labelled
    (`preference.build_pairs`)."""
    return preference.build_pairs(stage_config, make_mesh(stage_config.mesh))


def shared_pairs(stage_config) -> dict:
    """{'pairs': (train, evaluation, task)} of `stage_config` (its seed's SFT samples, labelled),
    labelled at its first call in this process and reused by the seed's other DPO runs."""
    train, evaluation, task = made_once(labelled_pairs, stage_config)
    return {"pairs": (dict(train), evaluation, task)}


# ---------------------------------------------------------------------------------------------
# What a run measured.


def trajectory(run_dir: Path, runner: str, max_step: int | None = None) -> list[dict]:
    """The run's evaluations, in step order: step, gold, KL to the SFT policy, gold's SE,
    response length and the share of responses that ended with EOS."""
    p = EVAL_PREFIX[runner]
    fields = {
        "gold": f"{p}gold",
        "kl": f"{p}kl",
        "gold_se": f"{p}gold_se",
        "length": f"{p}length",
        "ended": f"{p}ended_with_eos",
    }
    return logged_curve(run_dir, fields, max_step=max_step)


def overoptimization_seed(config, task, mesh, seed: int, seed_dir: Path, run: Run) -> dict:
    """The long DPO run's trajectory, its peak and final evaluation, and both evaluated again on
    fresh prompts with the SFT policy, paired (`policy_eval.on_fresh_prompts`)."""
    run_dir = seed_dir / run.name
    points = trajectory(run_dir, run.runner)
    peak, final = peak_and_final(points)
    fresh = on_fresh_prompts(
        seed_dir / "sft",
        run_dir,
        {"peak": peak["step"], "final": final["step"]},
        task=task,
        seed=seed,
        num_prompts=config.overoptimization.num_prompts,
        max_new_tokens=config.offline.eval.max_new_tokens,
        mesh=mesh,
        cache=run_dir / "fresh_peak_final.json",
    )
    gold = {k: v["gold"] for k, v in fresh.items()}
    drop = gold["peak"] - gold["final"]  # paired by prompt and sampling key
    return {
        "points": points,
        "peak": peak,
        "final": final,
        "reevaluated": {
            "sft_gold": float(gold["sft"].mean()),
            "peak_gold": float(gold["peak"].mean()),
            "final_gold": float(gold["final"].mean()),
            "peak_kl": float(np.mean(fresh["peak"]["kl"])),
            "final_kl": float(np.mean(fresh["final"]["kl"])),
            "drop": float(drop.mean()),
            "drop_se": standard_error(drop),
        },
    }
