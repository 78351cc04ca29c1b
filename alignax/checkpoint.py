"""Orbax checkpoints of (train state, data-iterator position, config) with auto-resume.

    ckpt = Checkpointer(workdir / "checkpoints", save_every=100, keep=3)
    restored = ckpt.restore_latest(state)      # None on a fresh workdir
    ...
    ckpt.save(step, state, data_state)          # saves when step % save_every == 0 (or force=True)

Saves are atomic (orbax writes to a temporary directory and renames). Restoring takes the
shardings of the `state` it is given, so a checkpoint written on one mesh restores onto another.
A checkpoint whose tree or shapes do not match the state raises CheckpointMismatchError naming
the first mismatched key and both shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
    """The checkpoint on disk was written by a different config."""


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


class Checkpointer:
    def __init__(self, directory: str | Path, *, save_every: int, keep: int = 3):
        self.directory = Path(directory).absolute()
        self.save_every = save_every
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": ocp.JsonCheckpointHandler(),
                "config": ocp.JsonCheckpointHandler(),
            },
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(
        self, step: int, state, data_state: dict | None = None, config=None, *, force: bool = False
    ) -> bool:
        """Saves when `step` is a multiple of save_every (or `force`); returns whether it did."""
        if not force and (self.save_every <= 0 or step % self.save_every):
            return False
        if step in self.manager.all_steps():
            return False
        config_json = {} if config is None else json.loads(config.to_json_best_effort())
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
        return saved

    def restore_latest(self, like_state) -> tuple[Any, dict] | None:
        """(state, data_state) of the latest checkpoint laid out like `like_state`, or None."""
        step = self.latest_step()
        if step is None:
            return None
        return self.restore(step, like_state)

    def restore(self, step: int, like_state) -> tuple[Any, dict]:
        _check_fits(
            self.directory / str(step),
            _shapes(like_state),
            _shapes(self.manager.item_metadata(step)["state"]),
        )
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
    model takes a policy's backbone but not its LM head); the returned dict has just those.
    """
    directory = Path(directory).absolute()
    manager = ocp.CheckpointManager(
        directory, item_handlers={"state": ocp.PyTreeCheckpointHandler()}
    )
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}: run the stage that writes it first")
    found = _shapes(manager.item_metadata(step)["state"])
    saved_keys = {k.split("/")[1] for k in found if k.startswith("params/")}
    wanted = {k: v for k, v in like_params.items() if k in saved_keys}
    if not wanted:
        raise CheckpointMismatchError(
            f"checkpoint {directory / str(step)} holds none of the params {sorted(like_params)}"
        )
    expected = _shapes({"params": wanted})
    _check_fits(directory / str(step), expected, {k: found[k] for k in expected if k in found})
    like = {"params": _abstract(wanted)}
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item=like,
                restore_args=jax.tree.map(
                    lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding), like
                ),
                partial_restore=True,
            )
        ),
    )
    manager.close()
    return restored["state"]["params"]
