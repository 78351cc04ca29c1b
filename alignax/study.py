"""The one way a study runs: its stages for every seed, then its analysis and report.

    run = Study.of(__name__).run          # at the end of a study script that defines plan,
                                          # evaluate_seed, analyse, report and summarize
    summary = run(config, workdir)        # = run_study(study, config, workdir)

A study declares what is its own: `plan(config, seed, seed_dir)`, the stages of one seed in the
order they run (each a `PlannedStage`: name, kind, config with its links to the stages before it,
and run options); `evaluate_seed(config, seed, seed_dir)`, what it measures of one seed's
policies (a picklable value); `analyse(config, seeds, workdir)`, the results across seeds (what
results.json holds, figures written on the way); `report(config, results, timings, prov)`, the
text of results.md; `summarize(results)`, the numbers of summary.json. The runner owns the rest,
the same for every study:

- every stage config of every seed is built and checked before anything runs (a refused link
  override, or a workdir holding checkpoints of another config, stops the study before it
  computes), then `setup` guards the study's workdir;
- seeds run one after another or as parallel jobs (`config.workers`, alignax.parallel), each in
  <workdir>/seed<k>, a finished stage skipped (`stage_finished`: same config, same upstream);
- compiled programs are kept in <workdir>/xla_cache, in every process;
- the seconds of every stage and evaluation go to the seed's timings ledger as each ends
  (<seed_dir>/timings.json, so a killed and resumed study still counts what it finished), the
  wall time to the study's (<workdir>/timings.json); the report gets them summed over seeds and
  over the invocations that built the workdir;
- provenance (command, commit, machine) is taken before anything runs, and goes with the timings
  into results.json; results.md and summary.json are written and the report is printed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections

from alignax.experiment import setup, validate_config, write_summary
from alignax.parallel import run_jobs
from alignax.provenance import provenance
from alignax.stages import SHARED_SECTIONS, stage_config, stage_finished
from alignax.workdir import accumulate_timings, check_config_unchanged, use_compilation_cache
from alignax.workflows import ppo, preference, reward_model, sft
from alignax.workflows.runner import StageKind, run_stage


@dataclasses.dataclass(frozen=True)
class PlannedStage:
    """One stage of one seed: it runs `kind` with `config` in <seed_dir>/<name> (a name may be
    a path: "d64/ppo/beta0"); its seconds count under `seconds/<group>` (default: its name).
    `inputs()`, when given, is called just before the stage runs (not when it is skipped) for
    more keywords of its builder (e.g. pairs labelled once and shared by several stages)."""

    name: str
    kind: StageKind
    config: ml_collections.ConfigDict
    options: dict = dataclasses.field(default_factory=dict)  # run_stage keywords
    group: str = ""
    inputs: Callable[[], dict] | None = None


@dataclasses.dataclass(frozen=True)
class Study:
    """What a study declares (see the module docstring). Its functions must be module-level
    (picklable), so that seeds can run as jobs on other processes."""

    plan: Callable[[ml_collections.ConfigDict, int, Path], list[PlannedStage]]
    evaluate_seed: Callable[[ml_collections.ConfigDict, int, Path], Any]
    analyse: Callable[[ml_collections.ConfigDict, dict, Path], dict]
    report: Callable[[ml_collections.ConfigDict, dict, dict, dict], str]
    summarize: Callable[[dict], dict]

    @classmethod
    def of(cls, module_name: str) -> Study:
        """The study a module declares by its functions of these names."""
        module = sys.modules[module_name]
        fields = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in fields if not callable(getattr(module, name, None))]
        if missing:
            raise TypeError(f"{module_name} declares no {', '.join(missing)} (see alignax.study)")
        return cls(**{name: getattr(module, name) for name in fields})

    def run(self, config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
        return run_study(self, config, workdir)


def run_study(study: Study, config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Runs `study` per `config` in `workdir` and returns its summary."""
    prov = provenance()  # of the code that runs, before anything can change it
    plans = plan_seeds(study, config, Path(workdir))
    workdir, _ = setup(config, workdir)
    start = time.perf_counter()
    jobs = [(study, config, seed, workdir / f"seed{seed}", plans[seed]) for seed in config.seeds]
    done = run_jobs(run_seed, jobs, workers=config.get("workers", 1))
    seeds = dict(zip(config.seeds, done, strict=True))
    timings = accumulate_timings(workdir, {"seconds/total": time.perf_counter() - start})
    # Stage seconds summed over seeds (on several workers they overlap in wall time).
    for seed in config.seeds:
        ledger = json.loads((workdir / f"seed{seed}" / "timings.json").read_text())
        for key, seconds in ledger.items():
            timings[key] = timings.get(key, 0.0) + seconds
    results = study.analyse(config, seeds, workdir)
    text = study.report(config, results, timings, prov)
    if jax.process_index() == 0:
        (workdir / "results.md").write_text(text)
        record = {**results, **timings, "provenance": prov}
        (workdir / "results.json").write_text(json.dumps(record, indent=2, default=_plain))
    print(text)
    summary = {**study.summarize(results), **{k: round(v, 1) for k, v in timings.items()}}
    write_summary(workdir, summary)
    return summary


def _plain(value):
    """A numpy scalar or array as JSON sees it (NaN stays NaN: an undefined statistic)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def plan_seeds(study: Study, config, workdir: Path) -> dict[int, list[PlannedStage]]:
    """seed -> its planned stages, every one built and checked against what its workdir already
    holds before anything runs."""
    validate_config(config)
    plans = {seed: study.plan(config, seed, workdir / f"seed{seed}") for seed in config.seeds}
    for seed, planned in plans.items():
        for stage in planned:
            check_config_unchanged(stage.config, workdir / f"seed{seed}" / stage.name)
    return plans


def run_seed(study: Study, config, seed: int, seed_dir: Path, planned: list[PlannedStage]):
    """One seed (a job for `run_jobs`): its stages in order, each skipped when it finished with
    the same config on the same upstream stages, then the study's evaluation of the seed."""
    use_compilation_cache(seed_dir.parent)  # in this process (a worker's is its own)
    for stage in planned:
        directory = seed_dir / stage.name
        if stage_finished(stage.config, directory):
            print(f"\n=== seed {seed}, {stage.name}: finished, skipped ===", flush=True)
            continue
        print(f"\n=== seed {seed}, {stage.name} ===", flush=True)
        mark = time.perf_counter()
        inputs = stage.inputs() if stage.inputs is not None else {}
        run_stage(stage.kind, stage.config, directory, **stage.options, **inputs)
        seconds = {f"seconds/{stage.group or stage.name}": time.perf_counter() - mark}
        accumulate_timings(seed_dir, seconds)
    print(f"\n=== seed {seed}, evaluation ===", flush=True)
    mark = time.perf_counter()
    evaluation = study.evaluate_seed(config, seed, seed_dir)
    accumulate_timings(seed_dir, {"seconds/eval": time.perf_counter() - mark})
    return evaluation


# ---------------------------------------------------------------------------------------------
# The RLHF stage graph that the pipeline, the DPO frontier and the InstructGPT study share.

RLHF_STAGES = {
    "pretrain": sft,
    "sft": sft,
    "reward_model": reward_model,
    "ppo": ppo,
    "dpo": preference,
}


def seed_stage_config(
    config, section: str, seed: int, links: dict, *, own: tuple[str, ...] = ()
) -> ml_collections.ConfigDict:
    """`config.stages[section]` as a stage of seed `seed`: with the sections the parent shares
    with every stage (`SHARED_SECTIONS`, but the seed and those in `own`, e.g. a reward model's
    own `model`), that seed, and the dotted `links` to the stages it builds on."""
    shared = tuple(k for k in SHARED_SECTIONS if k != "seed" and k not in own)
    out = stage_config(config, config.stages[section], links, shared, name=f"stages.{section}")
    with out.unlocked():
        out.seed = seed
    return out


def rlhf_stage_config(config, name: str, seed: int, seed_dir: Path) -> ml_collections.ConfigDict:
    """Stage `name` of `RLHF_STAGES` for seed `seed`: `config.stages[name]` with the parent's
    shared sections (the reward model keeps its own model), that seed, and the links to the
    stages it builds on in `seed_dir` (pretrain -> sft -> reward_model -> ppo, sft -> dpo; the
    base is `config.base_from` when set, a pretrained checkpoint instead of the pretrain stage)."""
    base = config.get("base_from") or seed_dir / "pretrain"
    links = {
        "pretrain": {},
        "sft": {"init_from": base},
        "reward_model": {"labels.policy_from": seed_dir / "sft"},
        "ppo": {
            "init_from": seed_dir / "sft",
            "rewards.reward_model_from": seed_dir / "reward_model",
        },
        "dpo": {"init_from": seed_dir / "sft", "labels.policy_from": seed_dir / "sft"},
    }[name]
    own = ()
    if name == "reward_model":
        own = ("model",)
        # Start from the pretrained backbone when the reward model has the policy's shape.
        if config.stages[name].model.to_dict() == config.model.to_dict():
            links["init_from"] = base
    return seed_stage_config(config, name, seed, links, own=own)
