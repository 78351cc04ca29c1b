"""Orbax checkpoints of (train state, data-iterator position, config) with auto-resume.

    ckpt = Checkpointer(workdir / "checkpoints", save_every=100, keep=3)
    restored = ckpt.restore_latest(state)      # None on a fresh workdir
    ...
    ckpt.save(step, state, data_state)          # saves when step % save_every == 0 (or force=True)

Saves are atomic (orbax writes to a temporary directory and renames). Restoring takes the
shardings of the `state` it is given, so a checkpoint written on one mesh restores onto another.
A checkpoint whose tree or shapes do not match the state raises CheckpointMismatchError naming
the first mismatched key and both shapes.

Failures (docs/failure_behaviour.md):
- a directory that cannot be written fails when the Checkpointer is made, naming the path and
  the cause; a save that fails (disk full) raises CheckpointWriteError naming the step, the path
  and the cause, removes its partial step directory and keeps the earlier steps; orbax's own
  reports of that error (four tracebacks through its threads) are not printed;
- a state with a NaN/Inf is never saved (NonFiniteMetricError names the first bad leaf);
- a damaged checkpoint (truncated array file, broken, empty or missing metadata, missing item)
  is moved aside to `damaged-<step>` with a warning naming the step, and the previous intact one
  is restored; if none is intact, CheckpointDamagedError names the steps and the fix.

`restore_params` reads only the `state` item of a step (not its data position or config), so
orbax has no other item to warn about.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from alignax.metrics import NonFiniteMetricError
from alignax.models.lora import HEADS, TARGETS, LoraConfig, merge


class CheckpointMismatchError(ValueError):
    """The checkpoint on disk was written by a different config."""


class CheckpointWriteError(OSError):
    """A checkpoint directory cannot be written (permissions, not a directory, disk full)."""


class CheckpointDamagedError(RuntimeError):
    """No intact checkpoint could be read from a directory that holds some."""


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _shapes(tree) -> dict[str, tuple]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_path_str(path): tuple(leaf.shape) for path, leaf in leaves}


def _abstract(tree):
    """ShapeDtypeStructs carrying each leaf's sharding: the layout orbax restores into."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def _check_fits(where: Path, expected: dict[str, tuple], found: dict[str, tuple]) -> None:
    mismatched = [k for k in set(expected) | set(found) if expected.get(k) != found.get(k)]
    # Name a params key present on both sides first: it says the most about the config.
    for key in sorted(
        mismatched,
        key=lambda k: (k not in expected or k not in found, not k.startswith("params"), k),
    ):
        raise CheckpointMismatchError(
            f"checkpoint {where} does not fit this config: at '{key}' the checkpoint has shape "
            f"{found.get(key, 'nothing')}, the config expects {expected.get(key, 'nothing')}. "
            f"Use a fresh --workdir or the config the checkpoint was written with."
        )


def checkpoint_steps(directory: str | Path) -> list[int]:
    """The steps with a finished checkpoint directory in `directory`, oldest first; reads the
    listing only (no orbax, creates nothing)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


# Tensorstore (orbax's array writer) reports an OS error as a ValueError whose text ends in the
# errno, e.g. "RESOURCE_EXHAUSTED: Error writing ... No space left on device [os_error_code='28']".
_TENSORSTORE_ERRNO = re.compile(r"\[os_error_code='?(\d+)'?\]")


def _os_errno(error: BaseException | None) -> int | None:
    """The errno of the first OS error in an exception's cause/context chain (orbax wraps
    them): an OSError, or a tensorstore error naming its `os_error_code`."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno is not None:
            return error.errno
        if match := _TENSORSTORE_ERRNO.search(str(error)):
            return int(match.group(1))
        error = error.__cause__ or error.__context__
    return None


class _DropReportsOfWriteErrors(logging.Filter):
    """Drops orbax's log records of a write that failed with an OS error. Each failed save logs
    the same error four times with its whole asyncio traceback (about 450 lines for a full
    disk); `Checkpointer.save` raises one CheckpointWriteError naming the step, the path and
    the cause instead. Other records, and reports of other errors, pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        exception = record.exc_info[1] if record.exc_info else None
        return exception is None or _os_errno(exception) is None


_WRITE_ERROR_FILTER = _DropReportsOfWriteErrors()


@contextlib.contextmanager
def _quiet_write_error_reports():
    """From the first save on: orbax's reports of a failed write are dropped (see
    _DropReportsOfWriteErrors; the filter stays, since orbax's background threads may report
    the failure after the save has returned); within: so is the "Event loop is closed" that
    tensorstore raises, unraisably, when the writes still pending after the first failure
    finish and find orbax's event loop gone."""
    # Orbax logs through absl.logging; asyncio reports the tasks orbax abandons.
    for logger in (logging.getLogger("absl"), logging.getLogger("asyncio")):
        if _WRITE_ERROR_FILTER not in logger.filters:
            logger.addFilter(_WRITE_ERROR_FILTER)
    previous_hook = sys.unraisablehook

    def unraisable_hook(unraisable):
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            previous_hook(unraisable)

    sys.unraisablehook = unraisable_hook
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook


def _error_summary(error: BaseException) -> str:
    """'Type: the first line of its message' (at most 300 characters of it): an exception in a
    one-line report (orbax's and tensorstore's messages run to many lines)."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


def check_writable(directory: str | Path, *, what: str = "checkpoints") -> Path:
    """Creates `directory` if needed and writes a probe file in it: a directory that cannot be
    written fails here, in milliseconds, instead of in a save minutes later."""
    directory = Path(directory).absolute()
    probe = directory / f".write-probe-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        probe.unlink()
    except OSError as e:
        raise CheckpointWriteError(
            e.errno,
            f"cannot write {what} to {directory}: {e.strerror or e}. Use a --workdir on a "
            "writable disk with free space (or fix its permissions).",
        ) from e
    return directory


@jax.jit
def _finite_leaves(tree):
    return [
        jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)
        for x in jax.tree.leaves(tree)
    ]


def finite_flags(tree) -> list[jax.Array]:
    """Per leaf of `tree`, whether it holds no NaN or Inf: device scalars, dispatched and not
    waited for (fetch them later, e.g. after the next step is dispatched)."""
    return _finite_leaves(tree)


def nonfinite_leaves(tree, flags: list | None = None) -> list[str]:
    """Paths of the leaves of `tree` that hold a NaN or Inf (one device reduction per leaf), or
    that `flags` (`finite_flags` of a tree of the same structure) marks."""
    paths = [_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    flags = jax.device_get(_finite_leaves(tree) if flags is None else flags)
    return [path for path, ok in zip(paths, flags) if not ok]


class Checkpointer:
    def __init__(self, directory: str | Path, *, save_every: int, keep: int = 3):
        self.directory = check_writable(directory)
        self.save_every = save_every
        self.manager = self._manager(keep)
        self.keep = keep

    def _manager(self, keep: int) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            self.directory,
            # keep <= 0 still keeps the latest: a run always ends with its final state on disk.
            options=ocp.CheckpointManagerOptions(max_to_keep=max(keep, 1), create=True),
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": ocp.JsonCheckpointHandler(),
                "config": ocp.JsonCheckpointHandler(),
            },
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def check_finite(self, state, problem: str, *, flags: list | None = None) -> None:
        """Raises NonFiniteMetricError naming the first non-finite leaves of `state` (or those
        `flags` marks, see `nonfinite_leaves`) after `problem`, and which checkpoint (if any) is
        still intact."""
        bad = nonfinite_leaves(state, flags)
        if not bad:
            return
        raise NonFiniteMetricError(
            f"{problem} {', '.join(bad[:3])}"
            + (f" (and {len(bad) - 3} more)" if len(bad) > 3 else "")
            + ". Lower the learning rate or check the inputs; "
            + self.resume_note()
        )

    def resume_note(self) -> str:
        """Where a rerun of a run stopped now would start: the latest checkpoint, which is intact
        (`save` refuses a non-finite state), or the beginning when none was written yet."""
        latest = self.latest_step()
        if latest is None:
            return f"no checkpoint was written to {self.directory} yet: a rerun starts over."
        return (
            f"the latest checkpoint (step {latest}) in {self.directory} is intact: a rerun "
            "resumes from it."
        )

    def save(
        self, step: int, state, data_state: dict | None = None, config=None, *, force: bool = False
    ) -> bool:
        """Saves when `step` is a multiple of save_every (or `force`); returns whether it did.

        Refuses (NonFiniteMetricError) a state holding a NaN or Inf, so every checkpoint on disk
        is one training can continue from.
        """
        if not force and (self.save_every <= 0 or step % self.save_every):
            return False
        if step in self.manager.all_steps():
            return False
        self.check_finite(state, f"not saving step {step}: the state holds NaN/Inf at")
        config_json = {} if config is None else json.loads(config.to_json_best_effort())
        failure = None
        with _quiet_write_error_reports():
            try:
                saved = self.manager.save(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardSave(state),
                        data=ocp.args.JsonSave(data_state or {}),
                        config=ocp.args.JsonSave(config_json),
                    ),
                    force=True,
                )
                self.manager.wait_until_finished()
            except Exception as e:
                if _os_errno(e) is None:
                    raise
                failure = e
                # Orbax's abandoned asyncio tasks hold the same error and report it when they
                # are collected: collect them here, where those reports are dropped.
                gc.collect()
        if failure is not None:
            code = _os_errno(failure)
            self._remove_partial(step)
            # Orbax's list of steps may have dropped the ones this save was to replace.
            self.manager.reload()
            detail = _error_summary(failure)
            # The cause keeps its message but not its traceback: orbax's runs through its
            # background threads and asyncio, dozens of lines that say nothing more.
            raise CheckpointWriteError(
                code,
                f"could not write checkpoint step {step} to {self.directory}: "
                f"{os.strerror(code)}. Free disk space or use another --workdir, then rerun "
                f"(it resumes); earlier checkpoints {checkpoint_steps(self.directory)} are "
                f"untouched and the partial step {step} was removed. ({detail})",
            ) from failure.with_traceback(None)
        return saved

    def _remove_partial(self, step: int) -> None:
        """Removes what a failed save of `step` left: orbax's temporary directory (which the next
        save of that step would otherwise trip over and which holds the space a full disk
        lacks)."""
        if jax.process_index() != 0:
            return
        for partial in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(partial, ignore_errors=True)

    def restore_latest(self, like_state) -> tuple[Any, dict] | None:
        """(state, data_state) of the latest intact checkpoint laid out like `like_state`, or
        None when there is none. A damaged checkpoint is moved aside with a warning naming its
        step and the one before it is tried; CheckpointMismatchError (another config) is not
        damage and is raised."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        damaged = []
        for step in steps:
            try:
                return self.restore(step, like_state)
            except CheckpointMismatchError:
                raise
            except Exception as e:  # orbax / tensorstore raise many types for a damaged file
                reason = _error_summary(e)
                damaged.append((step, reason))
                moved = self.directory / f"damaged-{step}"
                print(
                    f"WARNING: checkpoint step {step} in {self.directory} is damaged "
                    f"({reason[:300]}); moved it to {moved} and trying the previous one.",
                    file=sys.stderr,
                    flush=True,
                )
                if jax.process_index() == 0:
                    (self.directory / str(step)).rename(moved)
                self.manager.reload()
        if damaged:
            raise CheckpointDamagedError(
                f"no intact checkpoint in {self.directory}: steps "
                f"{[s for s, _ in damaged]} are damaged (moved to damaged-<step>; first error: "
                f"{damaged[0][1][:300]}). Delete {self.directory.parent} to start over, or "
                f"restore the checkpoints from a backup."
            )
        return None

    def restore(self, step: int, like_state) -> tuple[Any, dict]:
        step_dir = self.directory / str(step)
        _check_fits(step_dir, _shapes(like_state), _state_shapes(step_dir))
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(like_state)),
                data=ocp.args.JsonRestore(),
                config=ocp.args.JsonRestore(),
            ),
        )
        return restored["state"], dict(restored["data"] or {})

    def close(self):
        self.manager.close()


def restore_params(directory: str | Path, like_params, *, step: int | None = None):
    """The `params` of a checkpoint written by `Checkpointer` (latest step by default), laid out
    like `like_params`: how one stage (SFT, reward model) starts from another's result.

    Only the top-level entries of `like_params` that the checkpoint holds are restored (a reward
    model takes a policy's backbone but not its LM head); the returned dict has just those. A
    LoRA run's checkpoint (adapters in `params`, or in `params['policy']` for an RL run, the base
    in `ref_params`) restores as the merged policy; a policy's params (no `policy` entry) from
    an RL run's checkpoint are its `params['policy']`: how a stage starts from a PPO run's policy.
    Reading never creates anything: a missing directory raises FileNotFoundError naming it.
    """
    directory = Path(directory).absolute()
    if step is None:
        found_steps = checkpoint_steps(directory)
        step = found_steps[-1] if found_steps else None
    if step is None or not (directory / str(step)).is_dir():
        raise FileNotFoundError(
            f"no checkpoint{'' if step is None else f' step {step}'} in {directory}: run the "
            "stage that writes it first (or fix the path)"
        )
    # Only the `state` item is read (its metadata, then the entries asked for): a
    # CheckpointManager would read every item of the step and warn about each one it is not
    # given a handler for (the data position, the config), once per restore.
    step_dir = directory / str(step)
    try:
        found = _state_shapes(step_dir)
    except CheckpointDamagedError as e:
        raise CheckpointDamagedError(
            f"checkpoint step {step} in {directory} is damaged: {e} Rerun the stage that wrote "
            f"it (delete {directory.parent} first)."
        ) from e.__cause__
    saved_keys = {k.split("/")[1] for k in found if k.startswith("params/")}
    if _is_lora_policy(saved_keys, found):
        return _restore_lora_policy(directory, step, like_params, found)
    # An RL run's LoRA policy (PPO): adapters under params/policy, the base in ref_params.
    policy_keys = {k.split("/")[2] for k in found if k.startswith("params/policy/")}
    if "policy" in like_params and _is_lora_policy(policy_keys, found):
        merged = _restore_lora_policy(
            directory, step, like_params["policy"], found, adapters_at=("policy",)
        )
        return {"policy": merged}
    wanted = {k: v for k, v in like_params.items() if k in saved_keys}
    if not wanted and "policy" in saved_keys and "policy" not in like_params:
        # A policy, or a model on its backbone, from an RL run: PPO keeps the policy under
        # params/policy, beside its value model.
        held = like_params
        if not _is_lora_policy(policy_keys, found):
            held = {k: v for k, v in like_params.items() if k in policy_keys}
        if held:
            return restore_params(directory, {"policy": held}, step=step)["policy"]
    if not wanted:
        raise CheckpointMismatchError(
            f"checkpoint {step_dir} holds none of the params {sorted(like_params)}"
        )
    expected = _shapes({"params": wanted})
    _check_fits(step_dir, expected, {k: found[k] for k in expected if k in found})
    return _partial_restore(directory, step, {"params": _abstract(wanted)})["params"]


def _state_shapes(step_dir: Path) -> dict[str, tuple]:
    """The shape of every array in the `state` item of a checkpoint step, from its metadata
    (`state/_METADATA`) alone. A missing, empty or unreadable metadata file is damage
    (CheckpointDamagedError), not a checkpoint of another config: read through a
    CheckpointManager, a missing file reads as a state holding no arrays."""
    handler = ocp.PyTreeCheckpointHandler()
    try:
        shapes = _shapes(handler.metadata(step_dir / "state"))
    except Exception as e:  # FileNotFoundError, JSONDecodeError, KeyError, ...
        raise CheckpointDamagedError(
            f"the metadata of {step_dir / 'state'} cannot be read ({_error_summary(e)})."
        ) from e
    finally:
        handler.close()
    if not shapes:
        raise CheckpointDamagedError(f"the metadata of {step_dir / 'state'} lists no arrays.")
    return shapes


def _partial_restore(directory: Path, step: int, like: dict) -> dict:
    """The entries of the checkpoint's state named by `like` (ShapeDtypeStructs with
    shardings), restored into that layout from the `state` item alone."""
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        return checkpointer.restore(
            directory / str(step) / "state",
            args=ocp.args.PyTreeRestore(
                item=like,
                restore_args=jax.tree.map(
                    lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding), like
                ),
                partial_restore=True,
            ),
        )
    except Exception as e:
        raise CheckpointDamagedError(
            f"checkpoint step {step} in {directory} is damaged ({_error_summary(e)}). Rerun the "
            "stage that wrote it "
            f"(delete {directory.parent} first)."
        ) from e
    finally:
        checkpointer.close()


def _is_lora_policy(saved_params: set[str], found: dict) -> bool:
    """A LoRA run's checkpoint: params are adapters (and heads trained in full) only, the base
    is in ref_params."""
    return (
        bool(saved_params - {HEADS})
        and saved_params <= {*TARGETS, HEADS}
        and any(k.startswith("ref_params/") for k in found)
    )


def _restore_lora_policy(
    directory: Path, step: int, like_params, found: dict, adapters_at: tuple = ()
):
    """The policy of a LoRA run (alignax/models/lora.py): its base (`ref_params`) with the
    adapters (`params`, or the entry of `params` at the path `adapters_at`) merged in, laid out
    like `like_params`; the adapters' rank, alpha and targets from the run's config.json."""
    config_path = directory.parent / "config.json"
    if not config_path.is_file():
        raise CheckpointMismatchError(
            f"{directory} holds LoRA adapters, but {config_path} (their alpha) does not exist"
        )
    lora_section = json.loads(config_path.read_text())["lora"]
    base_keys = {k.split("/")[1] for k in found if k.startswith("ref_params/")}
    wanted = {k: v for k, v in like_params.items() if k in base_keys}
    expected = _shapes({"ref_params": wanted})
    _check_fits(directory / str(step), expected, {k: found[k] for k in expected if k in found})
    # The adapters are small: restored replicated on the mesh of the params they join.
    sharding = jax.tree.leaves(wanted)[0].sharding
    replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    dtype = jax.tree.leaves(wanted)[0].dtype
    prefix = "/".join(("params", *adapters_at)) + "/"
    adapters = {}
    for key, shape in found.items():
        if key.startswith(prefix):
            target, name = key.removeprefix(prefix).split("/")
            adapters.setdefault(target, {})[name] = jax.ShapeDtypeStruct(
                shape, dtype, sharding=replicated
            )
    nested = adapters
    for key in reversed(adapters_at):
        nested = {key: nested}
    like = {"params": nested, "ref_params": _abstract(wanted)}
    restored = _partial_restore(directory, step, like)
    restored_adapters = restored["params"]
    for key in adapters_at:
        restored_adapters = restored_adapters[key]
    targets = tuple(sorted(k for k in adapters if k != HEADS))
    lora = LoraConfig(
        rank=adapters[targets[0]]["a"].shape[-1],
        alpha=float(lora_section["alpha"]),
        targets=targets,
    )
    merged = jax.jit(lambda base, adapters: merge(base, adapters, lora))(
        restored["ref_params"], restored_adapters
    )
    return {k: merged[k] for k in wanted}
