"""The host loop every experiment shares: resume, step, log, evaluate, checkpoint.

    state = train_loop(state=state, step_fn=jitted_step, batches=iterator, mesh=mesh,
                       workdir=workdir, config=config, rng=rng, name="sft")

`batches` is a resumable iterator (`next()`, `state()`, `restore(state)`), so a killed run that is
started again with the same command restores the train state and the data position from the
latest checkpoint and ends where an uninterrupted run would have. Metrics are fetched from the
device every `train.log_every` steps (after the next step is dispatched, so the device does not
wait for the host) and before each evaluation and checkpoint; the updated state is checked
too, so a NaN/Inf stops the run and is never saved or evaluated. An evaluation statistic that is
undefined (NaN, e.g. a correlation over constant lengths) is reported as such, not as divergence.

`setup` guards the workdir: config validation, a lock against a second writer, and on resume a
refusal of a changed config or of a changed upstream stage (docs/failure_behaviour.md).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import fcntl
import hashlib
import json
import math
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
from jax.sharding import Mesh

from alignax import sharding
from alignax.checkpoint import (
    Checkpointer,
    check_writable,
    checkpoint_steps,
    finite_flags,
    restore_params,
)
from alignax.metrics import MetricWriter, Progress, check_finite, to_host
from alignax.models import Model


def default_train_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "steps": 100,
            "batch_size": 32,
            "grad_accum_steps": 1,
            "log_every": 10,
            "eval_every": 50,
            "checkpoint_every": 50,
            "keep_checkpoints": 2,
        }
    )


def setup(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    *,
    allow_config_change: bool | None = None,
) -> tuple[Path, Mesh]:
    """Start of every experiment: checks, multi-host init, the mesh, and the workdir.

    Before anything is compiled it validates the config (`validate_config`), takes the
    workdir's lock (`acquire_workdir_lock`), and, when the workdir already holds checkpoints
    (a resume), refuses a config that differs from the one they were written with (unless
    `allow_config_change`, default: the `--allow_config_change` flag, see
    `config_changes_allowed`) and refuses upstream stages (`init_from`, `*_from`) that changed
    since this stage started from them. Writes config.json and upstream.json and appends the
    start/resume to history.jsonl.
    """
    validate_config(config)
    sharding.maybe_initialize_distributed(config.multihost)
    mesh = sharding.make_mesh(config.mesh)
    workdir = Path(workdir)
    if allow_config_change is None:
        allow_config_change = _ALLOW_CONFIG_CHANGE.get()
    if jax.process_index() == 0:
        check_writable(workdir, what="the workdir")
        acquire_workdir_lock(workdir)
        upstream = {key: upstream_record(key, path) for key, path in upstream_paths(config).items()}
        new_config = json.loads(config.to_json_best_effort())
        steps_done = checkpoint_steps(workdir / "checkpoints")
        event = {"event": "resume" if steps_done else "start", "time": _now(), "pid": os.getpid()}
        if steps_done:
            event["from_step"] = steps_done[-1]
            event.update(_check_resume(workdir, new_config, upstream, allow_config_change))
        _append_json_line(workdir / "history.jsonl", event)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
        (workdir / "upstream.json").write_text(json.dumps(upstream, indent=2))
    return workdir, mesh


# ------------------------------------------------------------------------------ resume checks
# Keys that may differ between a run and its resume: they change where and how often things
# happen, not what is computed.
_NEUTRAL_TRAIN_KEYS = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints")
_ALLOW_CONFIG_CHANGE = contextvars.ContextVar("allow_config_change", default=False)


class ConfigChangedError(ValueError):
    """A resume with a config other than the one the checkpoints were written with."""


class StaleUpstreamError(RuntimeError):
    """A stage would resume on top of an upstream stage that has changed since it started."""


class WorkdirLockedError(RuntimeError):
    """Another live process is writing the same workdir."""


@contextlib.contextmanager
def config_changes_allowed(allowed: bool = True):
    """Within the block, `setup` resumes despite config changes (recorded in history.jsonl);
    the `--allow_config_change` flag of every experiment runs it in this block."""
    token = _ALLOW_CONFIG_CHANGE.set(allowed)
    try:
        yield
    finally:
        _ALLOW_CONFIG_CHANGE.reset(token)


def config_changes_are_allowed() -> bool:
    """Whether this context is inside `config_changes_allowed` (processes started by
    `alignax.parallel.run_jobs` inherit it)."""
    return _ALLOW_CONFIG_CHANGE.get()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _append_json_line(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def flatten_config(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _neutral(key: str) -> bool:
    parts = key.split(".")
    return (
        "mesh" in parts
        or parts[-1] == "multihost"
        or (len(parts) > 1 and parts[-2] == "train" and parts[-1] in _NEUTRAL_TRAIN_KEYS)
    )


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
    """{key: (old value, new value)} for the keys that change results (not mesh, multihost,
    nor the train.* logging/checkpoint cadence); missing keys show as None."""
    old, new = flatten_config(old), flatten_config(new)
    return {
        k: (old.get(k), new.get(k))
        for k in sorted(set(old) | set(new))
        if not _neutral(k) and old.get(k) != new.get(k)
    }


def upstream_paths(config: ml_collections.ConfigDict) -> dict[str, str]:
    """{config key: workdir} for every non-empty `init_from` / `*_from` key: the upstream stages
    this run reads params from."""
    flat = flatten_config(json.loads(config.to_json_best_effort()))
    return {
        k: v
        for k, v in flat.items()
        if k.split(".")[-1].endswith("_from") and isinstance(v, str) and v
    }


def stage_fingerprint(workdir: str | Path) -> dict:
    """{"step": latest checkpoint step, "config_sha256": hash of the stage's config (result
    keys only) and of its own upstream record}: two runs that could give different params give
    different fingerprints, through every stage upstream."""
    workdir = Path(workdir)
    steps_done = checkpoint_steps(workdir / "checkpoints")
    if not steps_done:
        raise FileNotFoundError(
            f"no checkpoint in {workdir.absolute() / 'checkpoints'}: run the stage that writes "
            "it first (or fix the path)"
        )
    config = flatten_config(_read_json(workdir / "config.json") or {})
    blob = json.dumps(
        {
            "config": {k: v for k, v in config.items() if not _neutral(k)},
            "upstream": _read_json(workdir / "upstream.json") or {},
        },
        sort_keys=True,
    )
    return {"step": steps_done[-1], "config_sha256": hashlib.sha256(blob.encode()).hexdigest()}


def upstream_record(key: str, path: str) -> dict:
    """What a stage records about the upstream stage named by config key `key`."""
    if not Path(path).is_dir():
        raise FileNotFoundError(
            f"{key}={path!r}: no such directory; name the workdir of a finished stage "
            "(nothing is created there)"
        )
    try:
        return {"path": path, **stage_fingerprint(path)}
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{key}={path!r}: {e}") from None


def _check_resume(workdir: Path, new_config: dict, upstream: dict, allowed: bool) -> dict:
    """Refuses a resume whose config or upstream stages changed; returns what history records."""
    notes = {}
    old_config = _read_json(workdir / "config.json")
    if old_config is not None:
        changes = config_changes(old_config, new_config)
        if changes and not allowed:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in _rows(changes))
            raise ConfigChangedError(
                f"{workdir} holds checkpoints written with another config; these keys differ: "
                f"{shown}. Resuming would mix two experiments. Use a fresh --workdir, run with "
                f"the original values, or pass --allow_config_change to continue on purpose "
                f"(recorded in {workdir / 'history.jsonl'})."
            )
        if changes:
            notes["config_changes"] = {k: [a, b] for k, a, b in _rows(changes)}
            notes["allowed_by"] = "allow_config_change"
    recorded = _read_json(workdir / "upstream.json")
    if recorded is None:
        if upstream:
            print(
                f"WARNING: {workdir} has no upstream.json (written by an older alignax): "
                f"cannot check that {sorted(upstream)} did not change since it started.",
                file=sys.stderr,
                flush=True,
            )
        return notes
    for key, now in upstream.items():
        then = recorded.get(key)
        if then is None or then.get("path") != now["path"]:
            continue  # a renamed/added key is a config change, handled above
        if (then["step"], then["config_sha256"]) != (now["step"], now["config_sha256"]):
            raise StaleUpstreamError(
                f"stage {workdir} was built from {key}={now['path']} at step {then['step']} "
                f"(config {then['config_sha256'][:12]}), but that stage is now at step "
                f"{now['step']} (config {now['config_sha256'][:12]}): resuming would mix work "
                f"built on two versions of it. Delete {workdir} to rebuild this stage from the "
                f"current {now['path']} (or put the old one back)."
            )
    return notes


def _rows(changes: dict) -> list[tuple]:
    return [(k, a, b) for k, (a, b) in changes.items()]


# ------------------------------------------------------------------------------ workdir lock
_HELD_LOCKS: dict[Path, Any] = {}


def acquire_workdir_lock(workdir: str | Path) -> None:
    """Takes `<workdir>/.lock` for this process (re-entrant) until it exits; a second live
    process gets WorkdirLockedError naming the holder. The lock is an flock, which the kernel
    drops when its holder dies (even by kill -9), so a lock left by a killed run never blocks;
    on filesystems without flock the pid in the file decides."""
    path = (Path(workdir) / ".lock").absolute()
    if path in _HELD_LOCKS:
        return
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown process"
        handle.close()
        raise WorkdirLockedError(
            f"{Path(workdir)} is in use by another run ({holder}). Two runs writing one workdir "
            "corrupt its checkpoints and metrics: wait for that run to end or stop it, or use "
            "another --workdir."
        ) from None
    except OSError:  # no flock here (some network filesystems): trust the pid in the file
        handle.seek(0)
        holder = _parse_holder(handle.read())
        if holder and holder.get("host") == socket.gethostname() and _alive(holder.get("pid")):
            handle.close()
            raise WorkdirLockedError(
                f"{Path(workdir)} is in use by another run ({holder}); wait for it to end or "
                "stop it, or use another --workdir."
            ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}))
    handle.flush()
    _HELD_LOCKS[path] = handle


def release_workdir_lock(workdir: str | Path) -> None:
    handle = _HELD_LOCKS.pop((Path(workdir) / ".lock").absolute(), None)
    if handle is not None:
        handle.close()  # closing drops the flock; the file stays (deleting it would race)


def _parse_holder(text: str) -> dict | None:
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------ config checks
def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks every `train` section (also nested ones, e.g. a pipeline's `stages.sft.train`)
    and every `eval_fraction`; raises ValueError naming the full key and the allowed values."""
    flat = flatten_config(json.loads(config.to_json_best_effort()))

    def value(key):
        return flat[key]

    def need(key, ok, allowed):
        if not ok:
            raise ValueError(f"config {key}={value(key)!r}: must be {allowed}")

    def is_int(x):
        return isinstance(x, int) and not isinstance(x, bool)

    sections = {k.removesuffix(".steps") for k in flat if f".{k}".endswith(".train.steps")}
    for section in sorted(sections):
        prefix = f"{section}." if section else ""
        for leaf in ("steps", "batch_size", "log_every", "eval_every", "checkpoint_every"):
            key = prefix + leaf
            if key in flat:
                need(key, is_int(value(key)) and value(key) > 0, "a positive integer")
        if prefix + "keep_checkpoints" in flat:
            key = prefix + "keep_checkpoints"
            need(key, is_int(value(key)) and value(key) >= 0, "an integer >= 0")
        accum = prefix + "grad_accum_steps"
        if accum in flat:
            need(accum, is_int(value(accum)) and value(accum) > 0, "a positive integer")
            if prefix + "batch_size" in flat:
                need(
                    accum,
                    value(prefix + "batch_size") % value(accum) == 0,
                    f"a divisor of {prefix}batch_size={value(prefix + 'batch_size')}",
                )
    for key in flat:
        if key.split(".")[-1] == "eval_fraction":
            need(key, isinstance(value(key), float | int) and 0 < value(key) < 1, "in (0, 1)")


def check_model_fits_task(model_config, task) -> None:
    """The model must embed every token id of the task and hold its longest sequence."""
    if model_config.vocab_size < task.vocab_size:
        raise ValueError(
            f"model.vocab_size={model_config.vocab_size} is smaller than the "
            f"{task.name} task's vocabulary ({task.vocab_size})"
        )
    if model_config.max_len < task.seq_len:
        raise ValueError(
            f"model.max_len={model_config.max_len} is shorter than the {task.name} "
            f"task's sequences ({task.seq_len} tokens)"
        )


def check_model_fits_tokenizer(model_config, tokenizer) -> None:
    if model_config.vocab_size < tokenizer.vocab_size:
        raise ValueError(
            f"model.vocab_size={model_config.vocab_size} is smaller than the tokenizer's "
            f"vocabulary ({tokenizer.vocab_size})"
        )


def initial_params(
    model: Model,
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    rng: jax.Array,
    *,
    source: str | None = None,
):
    """Fresh sharded params, with the backbone (and any matching heads) taken from the final
    checkpoint of the stage in `source` (default `config.init_from`) when one is named."""
    params = sharding.init_params(model, rng, mesh)
    source = config.init_from if source is None else source
    if not source:
        return params
    return {**params, **restore_params(Path(source) / "checkpoints", params)}


def write_summary(workdir: str | Path, summary: dict) -> None:
    """<workdir>/summary.json, and the same as a two-column table on stdout. An undefined value
    (NaN/Inf, e.g. a correlation over constant lengths) is written as null and shown as
    'undefined'."""
    if jax.process_index() != 0:
        return
    summary = {k: None if _undefined(v) else v for k, v in summary.items()}
    Path(workdir, "summary.json").write_text(json.dumps(summary, indent=2))
    width = max(len(k) for k in summary)
    print(f"\nsummary ({workdir}):")
    for key, value in summary.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {'undefined' if value is None else shown}")


def _undefined(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def example_batch(arrays: dict, batch_size: int) -> dict:
    """The first `batch_size` rows: the shapes a step is compiled for."""
    return {k: v[:batch_size] for k, v in arrays.items()}


def train_loop(
    *,
    state,
    step_fn: Callable,
    batches,
    mesh: Mesh,
    workdir: str | Path,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    name: str,
    eval_fn: Callable | None = None,
    log_keys: tuple[str, ...] = ("loss",),
):
    """Runs `config.train.steps` steps of `step_fn(state, batch, rng) -> (state, metrics)`.

    `eval_fn(state) -> dict[str, float]` runs every `train.eval_every` steps and at the end; its
    metrics are written under `eval/`.
    """
    validate_config(config)
    train = config.train
    workdir = Path(workdir)
    checkpointer = Checkpointer(
        workdir / "checkpoints", save_every=train.checkpoint_every, keep=train.keep_checkpoints
    )
    restored = checkpointer.restore_latest(state)
    if restored is not None:
        state, data_state = restored
        batches.restore(data_state)
        print(f"[{name}] resumed from step {int(state.step)} in {workdir}", flush=True)
    start = int(state.step)
    if jax.process_index() == 0:
        # Lines past the checkpoint were written by the killed run and are about to be redone.
        drop_metrics_after(workdir / "metrics.jsonl", start)
    writer = MetricWriter(workdir)
    progress = Progress(train.steps, name=name, start_step=start)
    # A log step's metrics and the finiteness of its state are computed on the device and
    # fetched only once the next step is dispatched, so the host never waits with the device
    # idle; they are fetched at once where the state is used next (evaluated or saved).
    pending: tuple | None = None  # (step, device metrics, finite flags of the state)

    def fetch_and_log(step, metrics, flags, like):
        host = to_host(metrics)
        check_finite(host, step)
        # The metrics describe the state before this step's update: check the update too
        # (`like`: a state of the same structure, for the names of the leaves).
        checkpointer.check_finite(
            like, f"non-finite state after step {step}: NaN/Inf in", flags=flags
        )
        writer.write(step, host)
        progress.update(step, host, log_keys)

    def evaluate_and_log(step, state):
        evaluation = {f"eval/{k}": v for k, v in eval_fn(state).items()}
        undefined = sorted(k for k, v in evaluation.items() if _undefined(v))
        if undefined:
            print(
                f"[{name}] step {step}: {', '.join(undefined)} undefined (NaN/Inf, e.g. a "
                "statistic of constant values); not logged",
                flush=True,
            )
        writer.write(step, {k: v for k, v in evaluation.items() if k not in undefined})

    try:
        for step in range(start + 1, train.steps + 1):
            batch = sharding.shard_batch(next(batches), mesh)
            state, metrics = step_fn(state, batch, rng)
            if pending is not None:
                fetch_and_log(*pending, like=state)
                pending = None
            is_last = step == train.steps
            saving = is_last or (train.checkpoint_every > 0 and step % train.checkpoint_every == 0)
            evaluating = eval_fn is not None and (is_last or step % train.eval_every == 0)
            if saving or step % train.log_every == 0:
                pending = (step, metrics, finite_flags(state))
            if pending is not None and (saving or evaluating):
                fetch_and_log(*pending, like=state)
                pending = None
            if evaluating:
                evaluate_and_log(step, state)
            if saving:
                checkpointer.save(step, state, batches.state(), config, force=True)
    except BaseException:
        if pending is not None:  # killed between a step's dispatch and its fetch: keep its line
            fetch_and_log(*pending, like=state)
        raise
    writer.close()
    checkpointer.close()
    return state


def drop_metrics_after(path: Path, step: int) -> None:
    """Removes the lines of a metrics.jsonl whose step is past `step`, in place (writers that
    already hold the file open in append mode keep appending to it)."""
    if not path.is_file():
        return
    with open(path, "r+") as f:
        lines = f.readlines()
        kept = [line for line in lines if _line_step(line) <= step]
        if len(kept) == len(lines):
            return
        f.seek(0)
        f.writelines(kept)
        f.truncate()


def _line_step(line: str) -> float:
    try:
        record = json.loads(line)
    except ValueError:
        return math.inf  # a line cut short by a kill
    return record.get("step", -1) if isinstance(record, dict) else -1
