"""The host loop every experiment shares: resume, step, log, evaluate, checkpoint.

    state = train_loop(state=state, step_fn=jitted_step, batches=iterator, mesh=mesh,
                       workdir=workdir, config=config, rng=rng, name="sft")

`batches` is a resumable iterator (`next()`, `state()`, `restore(state)`), so a killed run that is
started again with the same command restores the train state and the data position from the
latest checkpoint and ends where an uninterrupted run would have. Metrics are fetched from the
device every `train.log_every` steps (and before each checkpoint, so a NaN is never saved).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
from jax.sharding import Mesh

from alignax import sharding
from alignax.checkpoint import Checkpointer, restore_params
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


def setup(config: ml_collections.ConfigDict, workdir: str | Path) -> tuple[Path, Mesh]:
    """Start of every experiment: multi-host init, the mesh, and the workdir with config.json."""
    sharding.maybe_initialize_distributed(config.multihost)
    mesh = sharding.make_mesh(config.mesh)
    workdir = Path(workdir)
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    return workdir, mesh


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
    """<workdir>/summary.json, and the same as a two-column table on stdout."""
    if jax.process_index() != 0:
        return
    Path(workdir, "summary.json").write_text(json.dumps(summary, indent=2))
    width = max(len(k) for k in summary)
    print(f"\nsummary ({workdir}):")
    for key, value in summary.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")


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
    writer = MetricWriter(workdir)
    progress = Progress(train.steps, name=name, start_step=start)
    for step in range(start + 1, train.steps + 1):
        batch = sharding.shard_batch(next(batches), mesh)
        state, metrics = step_fn(state, batch, rng)
        is_last = step == train.steps
        saving = is_last or (train.checkpoint_every > 0 and step % train.checkpoint_every == 0)
        if saving or step % train.log_every == 0:
            host = to_host(metrics)
            check_finite(host, step)
            writer.write(step, host)
            progress.update(step, host, log_keys)
        if eval_fn is not None and (is_last or step % train.eval_every == 0):
            evaluation = {f"eval/{k}": v for k, v in eval_fn(state).items()}
            check_finite(evaluation, step)
            writer.write(step, evaluation)
        if saving:
            checkpointer.save(step, state, batches.state(), config, force=True)
    writer.close()
    checkpointer.close()
    return state
