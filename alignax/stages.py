"""Reading one stage's result in another: the model a stage trained and its final params.

A stage's workdir holds `config.json` (written by `alignax.experiment.setup`) and `checkpoints/`.
A downstream stage rebuilds the upstream model from the upstream config, so a reward model can
have its own size, independent of the policy it scores.

    model, params = load_stage_model(workdir, heads=("reward",), mesh=mesh)

Multi-stage experiments (the pipeline, over-optimisation) derive each stage's config from the
stage's own section plus the sections shared by every stage, with `stage_config`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections
from jax.sharding import Mesh

from alignax.checkpoint import Checkpointer, restore_params
from alignax.models import Model, Params, build_model
from alignax.sharding import init_params
from alignax.workdir import resume_changes, upstream_paths, upstream_record, upstream_unchanged


def stage_model_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The `model` section of the config the stage in `workdir` was run with."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: is {workdir} the workdir of a finished run?"
        )
    return ml_collections.ConfigDict(json.loads(path.read_text())["model"])


def load_stage_model(
    workdir: str | Path,
    *,
    heads: Sequence[str],
    mesh: Mesh,
    ensemble_size: int = 1,
) -> tuple[Model, Params]:
    """The model of the stage in `workdir` (its own config) and its final params; with
    `ensemble_size` > 1 the members' params are stacked on axis 0. A PPO stage's are its
    policy's (`checkpoint.restore_params`), beside which it keeps its value model."""
    model = build_model(stage_model_config(workdir), heads=heads)
    keys = jax.random.split(jax.random.key(0), ensemble_size)
    if ensemble_size == 1:
        like = init_params(model, keys[0], mesh)
    else:
        members = [init_params(model, k, mesh) for k in keys]
        like = jax.tree.map(lambda *xs: jax.numpy.stack(xs), *members)
    return model, restore_params(Path(workdir) / "checkpoints", like)


SHARED_SECTIONS = ("seed", "multihost", "distributed", "task_name", "task", "model", "mesh")


def stage_section(
    config: ml_collections.ConfigDict, *, own: tuple[str, ...] = ()
) -> ml_collections.ConfigDict:
    """A stage's section in a multi-stage config: the stage's own config without the sections
    its parent sets for every stage (SHARED_SECTIONS), except those in `own` (e.g. a reward
    model's own `model`). A section the parent sets is not there to override, so an override of
    it (`--config.stages.sft.model.d_model=128`) fails naming the key instead of being replaced
    by the parent's (alignax.cli points at the parent's key)."""
    section = config.copy_and_resolve_references()
    with section.unlocked():
        for key in SHARED_SECTIONS:
            if key not in own and key in section:
                del section[key]
    section.lock()
    return section


def stage_config(
    parent: ml_collections.ConfigDict,
    stage: ml_collections.ConfigDict,
    links: dict[str, str | Path],
    shared: tuple[str, ...] = SHARED_SECTIONS,
    *,
    name: str = "the stage",
) -> ml_collections.ConfigDict:
    """A copy of `stage` (built with `stage_section`) with the `shared` sections of `parent`
    and the dotted keys of `links` (e.g. {"init_from": ..., "rewards.reward_model_from": ...})
    set. A link the stage's section already sets otherwise (an override) is refused, naming
    `name`.key: the experiment decides which stage a stage builds on."""
    config = stage.copy_and_resolve_references()
    with config.unlocked():
        for key in shared:
            if key in config:  # it would be overwritten, and an override of it ignored
                raise ValueError(
                    f"config {name}.{key}: the parent's {key!r} is set for every stage; build the "
                    "stage's section with alignax.stages.stage_section"
                )
            config[key] = parent[key]
        for key, value in links.items():
            node = config
            *sections, leaf = key.split(".")
            for section in sections:
                node = node[section]
            if node.get(leaf) not in ("", None, str(value)):
                raise ValueError(
                    f"config {name}.{key}={node[leaf]!r}: this experiment sets it to "
                    f"{str(value)!r} (the stage this one builds on); it cannot be overridden"
                )
            node[leaf] = str(value)
    return config


def save_stage(
    workdir: str | Path, model_config, params: Params, *, step: int, extra: dict | None = None
) -> None:
    """Writes a stage that downstream code reads with `load_stage_model`: config.json (the model
    config, plus `extra`) and a checkpoint of the params at `step`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model_dict = (
        model_config.to_dict()
        if isinstance(model_config, ml_collections.ConfigDict)
        else dataclasses.asdict(model_config)
    )
    (workdir / "config.json").write_text(
        json.dumps({"model": model_dict, **(extra or {})}, indent=2)
    )
    checkpointer = Checkpointer(workdir / "checkpoints", save_every=1, keep=1)
    checkpointer.save(step, {"params": params}, force=True)
    checkpointer.close()


def stage_finished(stage_config: ml_collections.ConfigDict, workdir: str | Path) -> bool:
    """Whether the stage in `workdir` completed with this very config on these very upstream
    stages (its summary.json is a run's last write): a multi-stage experiment run again skips it.
    Anything else (no summary, another config, a changed upstream stage) goes through the stage's
    own resume checks. An upstream that moved with its contents unchanged (a copied workdir) is
    no change."""
    workdir = Path(workdir)
    if not (workdir / "summary.json").is_file():
        return False
    upstream = {k: upstream_record(k, v) for k, v in upstream_paths(stage_config).items()}
    changes, _ = resume_changes(workdir, json.loads(stage_config.to_json_best_effort()), upstream)
    return not changes and upstream_unchanged(workdir, upstream)
