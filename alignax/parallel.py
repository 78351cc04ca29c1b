"""Independent jobs of an experiment (PPO runs, reward-model sweeps) on separate processes.

On a CPU host, the tiny models of the default experiments do not use more than one core well,
so two independent stages run about twice as fast on two processes as one after the other:

    results = run_jobs(ppo.run, [(config_a, dir_a), (config_b, dir_b)], workers=2)

`workers = 1` runs the jobs in this process, in order (the tests and the `:runlocal` presets,
which then share one compilation cache). With more, each job runs in a fresh (spawned) process
pinned to one of this process's cores, so `fn` and its arguments must be picklable (a
module-level function; ConfigDicts, paths and arrays are), and `--allow_config_change`
(`alignax.workdir.config_changes_allowed`) holds in them as it does here. Jobs must not depend
on each other; an exception in any job is raised here after the others finish, with the job that
failed named.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from alignax.workdir import config_changes_allowed, config_changes_are_allowed


def _pin_to_one_core(cores) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cores.get()})


def _call(fn: Callable, allow_config_change: bool, *args):
    with config_changes_allowed(allow_config_change):
        return fn(*args)


def run_jobs(fn: Callable, jobs: Sequence[tuple], *, workers: int) -> list:
    """[fn(*job) for job in jobs], on `workers` processes (in this one when 1)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    context = multiprocessing.get_context("spawn")  # a forked process would inherit JAX's state
    cores = context.Queue()
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    workers = min(workers, len(jobs))
    for i in range(workers):
        cores.put(available[i % len(available)])
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_pin_to_one_core, initargs=(cores,)
    ) as pool:
        allowed = config_changes_are_allowed()
        futures = [pool.submit(_call, fn, allowed, *job) for job in jobs]
        errors = [(i, f.exception()) for i, f in enumerate(futures) if f.exception()]
    if errors:
        i, error = errors[0]
        raise RuntimeError(
            f"job {i} of {len(jobs)} ({getattr(fn, '__qualname__', fn)}) failed "
            f"({len(errors)} failed in all): {error!r}"
        ) from error
    return [f.result() for f in futures]
