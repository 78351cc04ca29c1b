"""The one way a study runs: its stages, then its analysis and report.

    run = Study.of(__name__).run          # at the end of a study script
    summary = run(config, workdir)        # = run_study(study, config, workdir)

Most studies are shaped by seeds. Such a study script declares what is its own:
`plan(config, seed, seed_dir)`, the stages of one seed in the order they run (each a
`PlannedStage`: name, kind, config with its links to the stages before it, and run options);
optionally `shared(config, workdir)`, stages that every seed builds on, run once in the workdir
before the seeds (e.g. one SFT policy whose samples each seed labels); `evaluate_seed(config,
seed, seed_dir)`, what it measures of one seed's policies (a picklable value); `analyse(config,
seeds, workdir)`, the results across seeds (what results.json holds, figures written on the
way); `report(config, results, timings, prov)`, the text of results.md; `summarize(results)`,
the numbers of summary.json. A study of another shape (e.g. one sweep of reward models trained
as a single vmapped run) declares `prepare(config, workdir)` (every check and plan before
anything runs) and `measure(config, workdir, plan)` (the work, returning its measurements)
instead of `plan` and `evaluate_seed`. The runner owns the rest, the same for every study:

- everything a study can check is checked before anything runs: every stage config of every
  seed is built and checked (a refused link override, or a workdir holding checkpoints of
  another config, stops the study before it computes), then `setup` guards the workdir;
- seeds run one after another or as parallel jobs (`config.workers`, alignax.parallel), each in
  <workdir>/seed<k>, a finished stage skipped (`stage_finished`: same config, same upstream);
- compiled programs are kept in <workdir>/xla_cache, in every process;
- the seconds of every stage and evaluation go to a timings ledger as each ends (a seed's in
  <seed_dir>/timings.json, the shared stages' and a study's own phases in
  <workdir>/timings.json, so a killed and resumed study still counts what it finished); the
  report gets them summed over seeds and over the invocations that built the workdir;
- provenance (command, commit, machine) is taken before anything runs, and goes with the timings
  into results.json; results.md and summary.json are written and the report is printed.
"""

from __future__ import annotations

import dataclasses
import functools
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
from alignax.tasks import get_task
from alignax.workdir import accumulate_timings, check_config_unchanged, use_compilation_cache
from alignax.workflows import ppo, preference, reward_model, sft
from alignax.workflows.runner import StageKind, run_stage


@dataclasses.dataclass(frozen=True)
class PlannedStage:
    """One stage: it runs `kind` with `config` in <seed_dir>/<name> (a shared stage: in
    <workdir>/<name>; a name may be a path: "d64/ppo/beta0"); its seconds count under
    `seconds/<group>` (default: its name). `inputs()`, when given, is called just before the
    stage runs (not when it is skipped) for more keywords of its builder (e.g. pairs labelled
    once and shared by several stages)."""

    name: str
    kind: StageKind
    config: ml_collections.ConfigDict
    options: dict = dataclasses.field(default_factory=dict)  # run_stage keywords
    group: str = ""
    inputs: Callable[[], dict] | None = None


@dataclasses.dataclass(frozen=True)
class Study:
    """What a study declares (see the module docstring): `prepare(config, workdir) -> plan`,
    `measure(config, workdir, plan) -> (measurements, stage seconds not in the workdir's
    ledger)`, `analyse`, `report` and `summarize`. A study of seeds gets `prepare` and `measure`
    from its `plan`, `shared` and `evaluate_seed`. Its functions must be module-level
    (picklable), so that seeds can run as jobs on other processes."""

    prepare: Callable[[ml_collections.ConfigDict, Path], Any]
    measure: Callable[[ml_collections.ConfigDict, Path, Any], tuple[Any, dict]]
    analyse: Callable[[ml_collections.ConfigDict, Any, Path], dict]
    report: Callable[[ml_collections.ConfigDict, dict, dict, dict], str]
    summarize: Callable[[dict], dict]

    @classmethod
    def of(cls, module_name: str) -> Study:
        """The study a module declares by its functions of these names."""
        module = sys.modules[module_name]
        seeded = callable(getattr(module, "plan", None))
        own = ("plan", "evaluate_seed") if seeded else ("prepare", "measure")
        names = (*own, "analyse", "report", "summarize")
        missing = [name for name in names if not callable(getattr(module, name, None))]
        if missing:
            raise TypeError(f"{module_name} declares no {', '.join(missing)} (see alignax.study)")
        functions = {name: getattr(module, name) for name in names}
        if seeded:
            shared = getattr(module, "shared", None)
            functions["prepare"] = functools.partial(plan_seeds, functions.pop("plan"), shared)
            functions["measure"] = functools.partial(run_seeds, functions.pop("evaluate_seed"))
        return cls(**functions)

    def run(self, config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
        return run_study(self, config, workdir)


def run_study(study: Study, config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Runs `study` per `config` in `workdir` and returns its summary."""
    prov = provenance()  # of the code that runs, before anything can change it
    validate_config(config)
    plan = study.prepare(config, Path(workdir))
    workdir, _ = setup(config, workdir)
    use_compilation_cache(workdir)
    start = time.perf_counter()
    measurements, seconds = study.measure(config, workdir, plan)
    timings = accumulate_timings(workdir, {"seconds/total": time.perf_counter() - start})
    for key, value in seconds.items():
        timings[key] = timings.get(key, 0.0) + value
    results = study.analyse(config, measurements, workdir)
    text = study.report(config, results, timings, prov)
    if jax.process_index() == 0:
        (workdir / "results.md").write_text(text)
        record = results_record(results, timings, prov)
        (workdir / "results.json").write_text(json.dumps(record, indent=2, default=_plain))
    print(text)
    summary = {**study.summarize(results), **{k: round(v, 1) for k, v in timings.items()}}
    write_summary(workdir, summary)
    return summary


def results_record(results: dict, timings: dict, prov: dict) -> dict:
    """What results.json holds: the analysis, the timings ("seconds/..." keys) and the
    provenance, side by side (`split_results_record` takes them apart)."""
    return {**results, **timings, "provenance": prov}


def split_results_record(record: dict) -> tuple[dict, dict, dict]:
    """(results, timings, provenance) of a results.json `record`: the arguments its study's
    `report` was called with."""
    results = dict(record)
    prov = results.pop("provenance")
    timings = {k: results.pop(k) for k in list(results) if k.startswith("seconds/")}
    return results, timings, prov


def _plain(value):
    """A numpy scalar or array as JSON sees it (NaN stays NaN: an undefined statistic)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


@dataclasses.dataclass(frozen=True)
class SeedPlan:
    """A study of seeds, planned: the stages shared by every seed, then each seed's."""

    shared: list[PlannedStage]
    seeds: dict[int, list[PlannedStage]]


def plan_seeds(plan: Callable, shared: Callable | None, config, workdir: Path) -> SeedPlan:
    """Every stage planned and checked against what its directory already holds."""
    out = SeedPlan(
        shared=shared(config, workdir) if shared else [],
        seeds={seed: plan(config, seed, workdir / f"seed{seed}") for seed in config.seeds},
    )
    for stage in out.shared:
        check_config_unchanged(stage.config, workdir / stage.name)
    for seed, planned in out.seeds.items():
        for stage in planned:
            check_config_unchanged(stage.config, workdir / f"seed{seed}" / stage.name)
    return out


def run_seeds(evaluate_seed: Callable, config, workdir: Path, plan: SeedPlan) -> tuple[dict, dict]:
    """The shared stages, then every seed (in order, or as `config.workers` parallel jobs):
    ({seed: its evaluation}, stage seconds summed over the seeds' ledgers)."""
    for stage in plan.shared:
        run_planned(stage, workdir, workdir, "shared")
    jobs = [
        (evaluate_seed, config, seed, workdir / f"seed{seed}", plan.seeds[seed])
        for seed in config.seeds
    ]
    done = run_jobs(run_seed, jobs, workers=config.get("workers", 1))
    seconds: dict[str, float] = {}
    for seed in config.seeds:
        ledger = json.loads((workdir / f"seed{seed}" / "timings.json").read_text())
        for key, value in ledger.items():
            seconds[key] = seconds.get(key, 0.0) + value
    return dict(zip(config.seeds, done, strict=True)), seconds


def run_seed(evaluate_seed: Callable, config, seed: int, seed_dir: Path, planned: list):
    """One seed (a job for `run_jobs`): its stages in order, each skipped when it finished with
    the same config on the same upstream stages, then the study's evaluation of the seed."""
    use_compilation_cache(seed_dir.parent)  # in this process (a worker's is its own)
    seed_dir.mkdir(parents=True, exist_ok=True)  # a study may plan no stages for a seed
    for stage in planned:
        run_planned(stage, seed_dir, seed_dir, f"seed {seed}")
    print(f"\n=== seed {seed}, evaluation ===", flush=True)
    mark = time.perf_counter()
    evaluation = evaluate_seed(config, seed, seed_dir)
    accumulate_timings(seed_dir, {"seconds/eval": time.perf_counter() - mark})
    return evaluation


def run_planned(stage: PlannedStage, parent: Path, ledger: Path | None, label: str) -> None:
    """Runs `stage` in <parent>/<name> unless it finished there with the same config and
    upstream; its seconds go to the ledger in `ledger` (none: the caller times it)."""
    directory = parent / stage.name
    if stage_finished(stage.config, directory):
        print(f"\n=== {label}, {stage.name}: finished, skipped ===", flush=True)
        return
    print(f"\n=== {label}, {stage.name} ===", flush=True)
    mark = time.perf_counter()
    inputs = stage.inputs() if stage.inputs is not None else {}
    run_stage(stage.kind, stage.config, directory, **stage.options, **inputs)
    if ledger is not None:
        seconds = time.perf_counter() - mark
        accumulate_timings(ledger, {f"seconds/{stage.group or stage.name}": seconds})


def with_inputs_from(
    config: ml_collections.ConfigDict, made_from: dict
) -> ml_collections.ConfigDict:
    """`config` with an `inputs_from` section: what the builder inputs a study hands the stage
    (`PlannedStage.inputs`, e.g. pairs it labelled) are made from: the parent's config sections
    they read, and `*_from` links to the stages they sample (kept as upstream stages, with their
    fingerprints). A change there is then a change of the stage: a rerun neither skips it nor
    resumes it silently."""
    out = config.copy_and_resolve_references()
    plain = {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in made_from.items()}
    with out.unlocked():
        out.inputs_from = ml_collections.ConfigDict(
            {k: str(v) if isinstance(v, Path) else v for k, v in plain.items()}
        )
    return out


_MADE: dict[tuple, Any] = {}


def made_once(make: Callable, config: ml_collections.ConfigDict, *args) -> Any:
    """`make(config, *args)`, computed at its first call in this process and reused after, for
    equal configs and arguments: e.g. the labelled pairs that several stages of a seed train on
    and its evaluation reads."""
    key = (make.__module__, make.__qualname__, config.to_json_best_effort(), *map(str, args))
    if key not in _MADE:
        _MADE[key] = make(config, *args)
    return _MADE[key]


def check_solution_room(config, keys: tuple[str, ...]) -> None:
    """Every `max_new_tokens` at the dotted `keys` of `config` (a study on a task with written-out
    solutions, such as arithmetic) leaves room for the task's longest solution and its EOS: a
    shorter cap would cut right answers off and count them wrong. Refused naming each short
    key."""
    c = config.task
    needed = get_task(config.task_name, c).answer_len + 1
    values = {
        key: functools.reduce(lambda node, k: node[k], key.split("."), config) for key in keys
    }
    short = [f"{key}={value}" for key, value in values.items() if value < needed]
    if short:
        raise ValueError(
            f"{', '.join(short)}: the task's solutions (task.num_steps={c.num_steps}, operands "
            f"up to {c.max_operand}) take up to {needed} tokens with their EOS"
        )


def checkpoints_saved(train) -> int:
    """How many checkpoints a `train` section saves: one every `checkpoint_every` steps and the
    last step's."""
    return -(-train.steps // train.checkpoint_every)


def check_every_checkpoint_kept(train, section: str, why: str) -> None:
    """A study that reads every checkpoint a stage saves (one every `checkpoint_every` steps and
    the last) refuses a `train` section (at config key `section`) that keeps fewer, naming the
    keys, `why` it reads them, and the count to keep."""
    saved = checkpoints_saved(train)
    if train.keep_checkpoints < saved:
        raise ValueError(
            f"{section}.keep_checkpoints={train.keep_checkpoints} keeps fewer than the {saved} "
            f"checkpoints of {section}.steps={train.steps} at checkpoint_every="
            f"{train.checkpoint_every}; {why}: set --config.{section}.keep_checkpoints={saved}"
        )


# ---------------------------------------------------------------------------------------------
# What every study's report writes the same way.


def wall_time_text(timings: dict) -> str:
    """The report's words on time: the wall time and each stage's minutes, summed over seeds
    and over the invocations that built the workdir."""
    stages = ", ".join(
        f"{key.removeprefix('seconds/').replace('_', ' ')} {seconds / 60:.1f}"
        for key, seconds in timings.items()
        if key != "seconds/total"
    )
    return (
        f"wall time {timings['seconds/total'] / 60:.1f} min, summed over the invocations that "
        f"built the workdir (by stage, summed over seeds: {stages} min)"
    )


# ---------------------------------------------------------------------------------------------
# The RLHF stage graph that the pipeline, the DPO frontier and the InstructGPT study share.


def check_trajectory(steps, key: str, train, stage: str) -> None:
    """`steps` (config `key`), the steps a run of the stage template `stage` (with its `train`
    section) is measured at: increasing multiples of its checkpoint interval, the last its final
    step, and every checkpoint kept."""
    steps = tuple(steps)
    if (
        steps != tuple(sorted(set(steps)))
        or steps[-1] != train.steps
        or any(s <= 0 or s % train.checkpoint_every for s in steps)
    ):
        raise ValueError(
            f"{key}={steps}: increasing multiples of checkpoint_every={train.checkpoint_every}, "
            f"the last the run's steps={train.steps}"
        )
    check_every_checkpoint_kept(train, f"{stage}.train", f"{key} are measured")


def check_same_labels(config, whose: str) -> None:
    """A study whose reward model learns from its DPO stage's pairs (labels.comparisons draws
    the same ones for the same labels section and seed) refuses labels sections that differ;
    `whose`: the runs whose annotator and samples they are."""
    if config.stages.reward_model.labels.to_dict() != config.stages.dpo.labels.to_dict():
        raise ValueError(
            f"stages.reward_model.labels must equal stages.dpo.labels ({whose} annotator and "
            "samples)"
        )


def check_kl_budgets(budgets, key: str) -> None:
    """`budgets` (config `key`), the KL values runs are compared at: at least one, all positive."""
    if not budgets or min(budgets) <= 0:
        raise ValueError(f"{key}={tuple(budgets)}: positive KL budgets")


def check_fixed_kl_betas(config) -> None:
    """A study that runs its PPO template (`stages.ppo`) at each KL coefficient of `betas`:
    distinct coefficients, none negative, and a fixed KL control that keeps each one."""
    betas = tuple(config.betas)
    if not betas or len(set(betas)) < len(betas) or min(betas) < 0:
        raise ValueError(f"betas={betas}: distinct KL coefficients, none negative")
    control = config.stages.ppo.ppo.kl_control
    if control != "fixed":
        raise ValueError(
            f"stages.ppo.ppo.kl_control={control!r}: must be 'fixed' (each run keeps its "
            "coefficient of betas)"
        )


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
