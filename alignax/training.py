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

The start and end of an experiment (`setup`, `write_summary`, ...) are in `alignax.experiment`;
the workdir guard (lock, resume checks) in `alignax.workdir`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
from jax.sharding import Mesh

from alignax import sharding
from alignax.checkpoint import Checkpointer, finite_flags
from alignax.data.batching import BatchIterator
from alignax.experiment import is_undefined
from alignax.metrics import MetricWriter, Progress, check_finite, to_host


def default_train_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "steps": 100,
            "batch_size": 32,
            "grad_accum_steps": 1,
            "log_every": 10,
            "eval_every": 50,
            # Steps evaluated besides every `eval_every`-th (and the last), e.g. a log-spaced
            # schedule (1, 2, 4, 8) that resolves how a run leaves its start.
            "eval_steps": (),
            "checkpoint_every": 50,
            "keep_checkpoints": 2,
        }
    )


def train_batches(config: ml_collections.ConfigDict, arrays: dict, *, unit: str) -> BatchIterator:
    """A stage's training batches: `config.train.batch_size` rows of `arrays` at a time,
    shuffled with `config.seed`. A batch larger than the data is refused, naming the key and
    the data's size in `unit`s (e.g. "pairs")."""
    size = len(next(iter(arrays.values())))
    if config.train.batch_size > size:
        raise ValueError(
            f"config train.batch_size={config.train.batch_size} is more than the stage's "
            f"{size} training {unit}: lower it or give the stage more data"
        )
    return BatchIterator(arrays, batch_size=config.train.batch_size, seed=config.seed)


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
    evaluate_at_start: bool = False,
):
    """Runs `config.train.steps` steps of `step_fn(state, batch, rng) -> (state, metrics)`.

    `eval_fn(state) -> dict[str, float]` runs every `train.eval_every` steps, at each of
    `train.eval_steps` and at the end; its metrics are written under `eval/`, and a `texts`
    entry (a list of sample texts) to samples.jsonl. With `evaluate_at_start`, a fresh run also
    evaluates the starting state, at step 0. `config` is checked by the caller
    (`alignax.experiment.setup`).
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
    if jax.process_index() == 0:
        # Lines past the checkpoint were written by the killed run and are about to be redone
        # (all of them, when it was killed before its first checkpoint).
        for log in ("metrics.jsonl", "samples.jsonl"):
            drop_metrics_after(workdir / log, start if start > 0 else -1)
    writer = MetricWriter(workdir)
    progress = Progress(train.steps, name=name, start_step=start)
    # A log step's metrics and the finiteness of its state are computed on the device and
    # fetched only once the next step is dispatched, so the host never waits with the device
    # idle; they are fetched at once where the state is used next (evaluated or saved).
    pending: tuple | None = None  # (step, device metrics, finite flags of the state)
    extra_eval_steps = frozenset(train.eval_steps)

    def fetch_and_log(step, metrics, flags, like):
        host = to_host(metrics)
        check_finite(host, step, resume_note=checkpointer.resume_note())
        # The metrics describe the state before this step's update: check the update too
        # (`like`: a state of the same structure, for the names of the leaves).
        checkpointer.check_finite(
            like, f"non-finite state after step {step}: NaN/Inf in", flags=flags
        )
        writer.write(step, host)
        progress.update(step, host, log_keys)

    def evaluate_and_log(step, state):
        result = eval_fn(state)
        if "texts" in result:
            writer.write_texts(step, "samples", result["texts"])
        evaluation = {f"eval/{k}": v for k, v in result.items() if k != "texts"}
        undefined = sorted(k for k, v in evaluation.items() if is_undefined(v))
        if undefined:
            print(
                f"[{name}] step {step}: {', '.join(undefined)} undefined (NaN/Inf, e.g. a "
                "statistic of constant values); not logged",
                flush=True,
            )
        writer.write(step, {k: v for k, v in evaluation.items() if k not in undefined})

    if evaluate_at_start and eval_fn is not None and start == 0:
        evaluate_and_log(0, state)
    try:
        for step in range(start + 1, train.steps + 1):
            batch = sharding.shard_batch(next(batches), mesh)
            state, metrics = step_fn(state, batch, rng)
            if pending is not None:
                fetch_and_log(*pending, like=state)
                pending = None
            is_last = step == train.steps
            saving = is_last or (train.checkpoint_every > 0 and step % train.checkpoint_every == 0)
            evaluating = eval_fn is not None and (
                is_last or step % train.eval_every == 0 or step in extra_eval_steps
            )
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
