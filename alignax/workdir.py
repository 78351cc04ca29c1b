"""What an experiment keeps in its workdir across invocations (compiled programs, wall time),
and the guard that lets only one run, of one config, write it.

An experiment's stages are cached in its workdir, so a killed run resumes where it stopped. Two
things make that cheap and honest:

    use_compilation_cache(workdir)        # compiled programs in <workdir>/xla_cache
    accumulate_timings(directory, {...})  # seconds added to <directory>/timings.json

With the cache, a program compiled once (by another seed, another run of the same shapes, or an
earlier invocation) is read back instead of compiled again. With the ledger, a resumed run
reports what the whole result cost, not only the part this invocation did.

The guard (`guard_workdir`, called by `alignax.experiment.setup` before anything is compiled)
takes the workdir's lock against a second writer (`acquire_workdir_lock`: WorkdirLockedError)
and, on a resume, refuses a changed config (ConfigChangedError, unless `config_changes_allowed`,
the `--allow_config_change` flag) or a changed upstream stage (StaleUpstreamError; see
`upstream_paths`, `stage_fingerprint`). It writes config.json and upstream.json and appends the
start or resume to history.jsonl (docs/failure_behaviour.md).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from alignax.checkpoint import check_writable, checkpoint_steps


def use_compilation_cache(workdir: Path, min_compile_seconds: float = 0.5) -> None:
    """Keeps compiled programs of this process in <workdir>/xla_cache, unless it has a cache
    already (the tests set one). Call it before the first compilation, in every process that
    compiles (a worker of `alignax.parallel.run_jobs` starts without one)."""
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(Path(workdir).absolute() / "xla_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)


def accumulate_timings(directory: Path, timings: dict[str, float]) -> dict[str, float]:
    """Adds `timings` (seconds by key) to those in <directory>/timings.json and returns the sums:
    the seconds of every invocation that built the directory."""
    path = Path(directory) / "timings.json"
    before = json.loads(path.read_text()) if path.exists() else {}
    total = dict(before)
    for key, seconds in timings.items():
        total[key] = before.get(key, 0.0) + seconds
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(total, indent=2))
    return total


# ------------------------------------------------------------------------------ workdir guard
def guard_workdir(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    allow_config_change: bool | None = None,
) -> None:
    """The workdir part of `alignax.experiment.setup`, on process 0: checks that the workdir
    can be written, takes its lock (`acquire_workdir_lock`), and, when it already holds
    checkpoints (a resume), refuses a config that differs from the one they were written with
    (unless `allow_config_change`, default: `config_changes_are_allowed()`) and upstream stages
    that changed since this stage started from them (`_check_resume`). Writes config.json and
    upstream.json and appends the start/resume to history.jsonl, saying so when the run before
    it never wrote its summary (it raised, or was killed: out of memory leaves no trace else)."""
    workdir = Path(workdir)
    if allow_config_change is None:
        allow_config_change = _ALLOW_CONFIG_CHANGE.get()
    if jax.process_index() == 0:
        created = _topmost_missing(workdir)
        check_writable(workdir, what="the workdir")
        if created is not None:
            _CREATED_WORKDIRS.append(created)
        acquire_workdir_lock(workdir)
        upstream = {key: upstream_record(key, path) for key, path in upstream_paths(config).items()}
        new_config = json.loads(config.to_json_best_effort())
        steps_done = checkpoint_steps(workdir / "checkpoints")
        event = {"event": "resume" if steps_done else "start", "time": _now(), "pid": os.getpid()}
        unfinished = _unfinished_run(workdir)
        if unfinished is not None:
            then = "resuming from step " + str(steps_done[-1]) if steps_done else "starting again"
            print(
                f"[workdir] {workdir}: the previous run (pid {unfinished['pid']}, "
                f"{unfinished['event']} at {unfinished['time']}) wrote no summary.json: it "
                "stopped on an error or was killed (out of memory, a signal, the machine); "
                f"{then}",
                flush=True,
            )
            event["after_unfinished_run"] = unfinished["time"]
        if steps_done:
            event["from_step"] = steps_done[-1]
            event.update(_check_resume(workdir, new_config, upstream, allow_config_change))
        _append_json_line(workdir / "history.jsonl", event)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
        (workdir / "upstream.json").write_text(json.dumps(upstream, indent=2))


# ------------------------------------------------------------------------------ study caches
def _plain(value):
    """`value` as JSON reads it back (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value, default=str))


def _key_path(path: Path) -> Path:
    return path.with_name(path.name + ".key.json")


def cache_is_current(path: str | Path, key: dict) -> bool:
    """Whether the cached artefact at `path` (a file or a directory a study computed) was made
    from `key` (the config values and upstream records it depends on), so that a study run again
    may reuse it. False when it does not exist. One made from another key (or by an alignax that
    kept no key) raises ConfigChangedError naming the keys that differ, unless config changes
    are allowed (`config_changes_allowed`): then False, and the caller makes it again."""
    path = Path(path)
    if not path.exists():
        return False
    made_from = _read_json(_key_path(path))
    changes = config_changes(made_from or {}, _plain(key)) if made_from is not None else None
    if changes == {}:
        return True
    if config_changes_are_allowed():
        print(f"[cache] {path} was made from another config: making it again", flush=True)
        return False
    shown = _shown(changes) if changes else "it records no config (written by an older alignax)"
    raise ConfigChangedError(
        f"{path} was made from another config than this run's ({shown}); reusing it would mix "
        "two experiments. Use a fresh --workdir, delete it to make it again, or pass "
        "--allow_config_change to make it again on purpose."
    )


def record_cache_key(path: str | Path, key: dict) -> None:
    """Records what the artefact at `path` was made from (<path>.key.json), after writing it."""
    _key_path(Path(path)).write_text(json.dumps(_plain(key), indent=2, sort_keys=True))


def cached_json(path: Path, key: dict, compute: Callable[[], Any]) -> Any:
    """`compute()` (a JSON-plain result), kept in `path` with what it was made from, `key` (by
    `record_cache_key`): read back while `cache_is_current(path, key)`, else made and written."""
    if cache_is_current(path, key):
        return json.loads(Path(path).read_text())
    result = compute()
    Path(path).write_text(json.dumps(result))
    record_cache_key(path, key)
    return result


def cached_arrays(path: Path, key: dict, compute: Callable[[], dict]) -> dict[str, np.ndarray]:
    """`cached_json` for a dict of arrays, kept in `path` (an .npz file)."""
    if cache_is_current(path, key):
        return dict(np.load(path, allow_pickle=False))
    result = compute()
    np.savez(path, **result)
    record_cache_key(path, key)
    return result


def cache_digest(key: dict) -> str:
    """A short hash of `key`: how a downstream artefact's key names an upstream one."""
    return hashlib.sha256(json.dumps(_plain(key), sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ failed starts
# Directories `guard_workdir` created in this process, outermost first.
_CREATED_WORKDIRS: list[Path] = []
# What `guard_workdir` and the compilation cache write before anything is computed.
_BOOKKEEPING = ("config.json", "upstream.json", "history.jsonl", ".lock")


def _topmost_missing(path: Path) -> Path | None:
    """The outermost directory of `path` (itself included) that does not exist yet."""
    path, missing = Path(path).absolute(), None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _unused(directory: Path) -> bool:
    """Whether `directory` holds nothing but a start's bookkeeping (and compiled programs)."""
    for path in directory.rglob("*"):
        rel = path.relative_to(directory)
        if path.is_file() and path.name not in _BOOKKEEPING and "xla_cache" not in rel.parts:
            return False
    return True


@contextlib.contextmanager
def discard_unused_workdirs_on_error():
    """A run that fails inside the block (a config or data error found after `setup`) leaves
    no workdir behind that it created and wrote nothing into but its start's bookkeeping
    (config.json, upstream.json, history.jsonl, the lock, compiled programs), so a rerun starts
    clean. A workdir that existed before, or that holds anything computed (a checkpoint,
    metrics, a result), is kept as it is. Every experiment's command line runs in this block."""
    mark = len(_CREATED_WORKDIRS)
    try:
        yield
    except BaseException:
        for directory in reversed(_CREATED_WORKDIRS[mark:]):
            if directory.is_dir() and _unused(directory):
                for lock in directory.rglob(".lock"):
                    release_workdir_lock(lock.parent)
                shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        del _CREATED_WORKDIRS[mark:]


# ------------------------------------------------------------------------------ resume checks
# Keys that may differ between a run and its resume: they change where and how often things
# happen, not what is computed.
_NEUTRAL_TRAIN_KEYS = (
    "log_every",
    "eval_every",
    "eval_steps",
    "checkpoint_every",
    "keep_checkpoints",
)
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


def _unfinished_run(workdir: Path) -> dict | None:
    """The last start/resume recorded in history.jsonl when no summary.json was written after
    it (the run raised, or was killed where nothing in it could record that), else None."""
    path = workdir / "history.jsonl"
    runs = [
        e
        for e in map(json.loads, path.read_text().splitlines() if path.is_file() else [])
        if e.get("event") in ("start", "resume")
    ]
    if not runs:
        return None
    started = datetime.datetime.fromisoformat(runs[-1]["time"]).timestamp()
    summary = workdir / "summary.json"
    return None if summary.is_file() and summary.stat().st_mtime >= started else runs[-1]


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
        or "distributed" in parts
        or (len(parts) > 1 and parts[-2] == "train" and parts[-1] in _NEUTRAL_TRAIN_KEYS)
    )


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
    """{key: (old value, new value)} for the keys that change results (not mesh, multihost,
    distributed, nor the train.* logging/checkpoint cadence); missing keys show as None. An
    empty link (`*_from`: no upstream) and a switch that is off (False) are the same as no key:
    a config written before the key existed (new switches are added off)."""
    old, new = flatten_config(old), flatten_config(new)
    return {
        k: (old.get(k), new.get(k))
        for k in sorted(set(old) | set(new))
        if not _neutral(k)
        and old.get(k) != new.get(k)
        and not (_is_link(k) and not old.get(k) and not new.get(k))
        and not (k not in old and new[k] is False)
        and not (k not in new and old[k] is False)
    }


def upstream_paths(config: ml_collections.ConfigDict) -> dict[str, str]:
    """{config key: workdir} for every non-empty `init_from` / `*_from` key: the upstream stages
    this run reads params from."""
    flat = flatten_config(json.loads(config.to_json_best_effort()))
    return {k: v for k, v in flat.items() if _is_link(k) and isinstance(v, str) and v}


# 2: paths left out of the hash (so a copied workdir keeps its fingerprints). A record without a
# format was written by an alignax that hashed paths too: only its step can be checked.
FINGERPRINT_FORMAT = 2


def _is_link(key: str) -> bool:
    """`init_from` and every `*_from` key: where an upstream stage lives, not what it holds."""
    return key.split(".")[-1].endswith("_from")


def _identity(record: dict) -> dict:
    """An upstream record without its path: what the upstream holds, wherever it lies."""
    return {k: v for k, v in record.items() if k != "path"}


def stage_fingerprint(workdir: str | Path) -> dict:
    """{"step": latest checkpoint step, "config_sha256": hash of the stage's config (result
    keys only) and of its own upstream records}: two runs that could give different params give
    different fingerprints, through every stage upstream. Paths are left out (the upstream
    stages enter by their own fingerprints), so a copied or moved chain of stages keeps its
    fingerprints."""
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
            "config": {k: v for k, v in config.items() if not (_neutral(k) or _is_link(k))},
            "upstream": {
                key: _identity(record)
                for key, record in (_read_json(workdir / "upstream.json") or {}).items()
            },
        },
        sort_keys=True,
    )
    return {
        "step": steps_done[-1],
        "config_sha256": hashlib.sha256(blob.encode()).hexdigest(),
        "format": FINGERPRINT_FORMAT,
    }


def _legacy_record_holds(then: dict, now: dict) -> bool:
    """Whether `then`, an upstream record of an older format, is consistent with `now`: the same
    upstream path and step (its hash cannot be compared)."""
    return (
        "config_sha256" in then
        and "format" not in then
        and then.get("path") == now.get("path")
        and then.get("step") == now.get("step")
    )


def is_pretrained_checkpoint(path: str | Path) -> bool:
    """A GGUF file, or a Hugging Face checkpoint directory (config.json with safetensors)."""
    path = Path(path)
    if path.suffix == ".gguf":
        return path.is_file()
    return (path / "config.json").is_file() and any(
        (path / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")
    )


def upstream_record(key: str, path: str) -> dict:
    """What a stage records about the upstream stage named by config key `key`: a stage's
    fingerprint, or for a pretrained checkpoint the name, size and modification time of each of
    its files (a replaced checkpoint is a changed upstream)."""
    if is_pretrained_checkpoint(path):
        files = [Path(path)] if Path(path).is_file() else sorted(Path(path).iterdir())
        stamps = {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()}
        return {"path": path, "pretrained": stamps}
    if not Path(path).is_dir():
        raise FileNotFoundError(
            f"{key}={path!r}: no such directory; name the workdir of a finished stage "
            "(nothing is created there)"
        )
    try:
        return {"path": path, **stage_fingerprint(path)}
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{key}={path!r}: {e}") from None


def resume_changes(workdir: Path, new_config: dict, upstream: dict) -> tuple[dict, dict]:
    """(changes, moved): the result keys whose values differ between the config the workdir was
    written with and `new_config` (`config_changes`), less the upstream links that only moved: a
    `*_from` path that changed while the upstream it names holds what the recorded one held (a
    copied or moved workdir). `upstream` is `{key: upstream_record(...)}` of the new config."""
    changes = config_changes(_read_json(workdir / "config.json") or {}, new_config)
    recorded = _read_json(workdir / "upstream.json") or {}
    moved = {
        key: change
        for key, change in changes.items()
        if key in upstream
        and key in recorded
        and _identity(recorded[key]) == _identity(upstream[key])
    }
    return {k: v for k, v in changes.items() if k not in moved}, moved


def upstream_unchanged(workdir: Path, upstream: dict) -> bool:
    """Whether every upstream the workdir recorded holds what it held (wherever it lies now)."""
    recorded = _read_json(workdir / "upstream.json")
    return recorded is not None and {k: _identity(v) for k, v in recorded.items()} == {
        k: _identity(v) for k, v in upstream.items()
    }


def check_config_unchanged(config: ml_collections.ConfigDict, workdir: str | Path) -> None:
    """Refuses (ConfigChangedError) what the stage's own `guard_workdir` would refuse of its
    config, before a multi-stage run starts: the stage in `workdir` holds checkpoints written
    with other values of keys that change results. Links (`*_from`) are left to that guard,
    which can tell a moved upstream from another one once the upstream stages exist."""
    workdir = Path(workdir)
    if not checkpoint_steps(workdir / "checkpoints") or config_changes_are_allowed():
        return
    old = _read_json(workdir / "config.json") or {}
    changes = config_changes(old, json.loads(config.to_json_best_effort()))
    changes = {k: v for k, v in changes.items() if not _is_link(k)}
    if changes:
        raise _config_changed_error(workdir, changes)


def _config_changed_error(workdir: Path, changes: dict) -> ConfigChangedError:
    return ConfigChangedError(
        f"{workdir} holds checkpoints written with another config; these keys differ: "
        f"{_shown(changes)}. Resuming would mix two experiments. Use a fresh --workdir, run with "
        f"the original values, or pass --allow_config_change to continue on purpose "
        f"(recorded in {workdir / 'history.jsonl'})."
    )


def _check_resume(workdir: Path, new_config: dict, upstream: dict, allowed: bool) -> dict:
    """Refuses a resume whose config or upstream stages changed; returns what history records."""
    notes = {}
    old_config = _read_json(workdir / "config.json")
    recorded = _read_json(workdir / "upstream.json")
    if old_config is not None:
        changes, moved = resume_changes(workdir, new_config, upstream)
        if moved:
            notes["moved_upstream"] = {k: [a, b] for k, a, b in _rows(moved)}
        if changes and not allowed:
            raise _config_changed_error(workdir, changes)
        if changes:
            notes["config_changes"] = {k: [a, b] for k, a, b in _rows(changes)}
            notes["allowed_by"] = "allow_config_change"
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
        # A key with no record is a config change, handled above. A changed path is checked
        # like an unchanged one: what the stage was built on must still be what it reads.
        if then is None or _identity(then) == _identity(now):
            continue
        if _legacy_record_holds(then, now):
            print(
                f"WARNING: {workdir}/upstream.json was written by an older alignax: {key} is "
                f"checked by its step ({now['step']}) only; from now on, fully.",
                file=sys.stderr,
                flush=True,
            )
            continue
        source = f"{key}={now['path']}"
        if then["path"] != now["path"]:
            source = f"{key}={then['path']} (now {now['path']})"
        if "pretrained" in then or "pretrained" in now:
            change = (
                "whose files changed since (name, size or modification time; a reinstall or a "
                "copy of the same weights changes the time too)"
                if "pretrained" in then and "pretrained" in now
                else "which is now another kind of upstream (a stage's workdir or a pretrained "
                "checkpoint) than when this stage started"
            )
            raise StaleUpstreamError(
                f"stage {workdir} was built from {source}, {change}: resuming would "
                f"mix work built on two versions of it. Delete {workdir} to rebuild this stage "
                "from the current files (or put the old ones back)."
            )
        if (then["step"], then["config_sha256"]) != (now["step"], now["config_sha256"]):
            raise StaleUpstreamError(
                f"stage {workdir} was built from {source} at step {then['step']} "
                f"(config {then['config_sha256'][:12]}), but that stage is now at step "
                f"{now['step']} (config {now['config_sha256'][:12]}): resuming would mix work "
                f"built on two versions of it. Delete {workdir} to rebuild this stage from the "
                f"current {now['path']} (or put the old one back)."
            )
    return notes


def _rows(changes: dict) -> list[tuple]:
    return [(k, a, b) for k, (a, b) in changes.items()]


def _shown(changes: dict) -> str:
    """'key: old -> new; ...' of `config_changes`' output, for a message."""
    return "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in _rows(changes))


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
