"""What every experiment does at its start and end.

    workdir, mesh = setup(config, workdir)   # checks, multi-host init, the mesh, the workdir guard
    ...                                      # stages, evaluations
    write_summary(workdir, summary)          # summary.json and a table on stdout

`setup` validates the config (`validate_config`) and guards the workdir
(`alignax.workdir.guard_workdir`: a lock against a second writer, and on resume a refusal of a
changed config or of a changed upstream stage; docs/failure_behaviour.md). A training stage
(alignax/workflows/) checks that the model fits its task and tokenizer
(`check_model_fits_task`, `check_model_fits_tokenizer`), builds its params (`initial_params`,
from `init_from` when set) and compiles its step for the shapes of `example_batch`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from pathlib import Path

import jax
import ml_collections
from jax.sharding import Mesh

from alignax import sharding
from alignax.checkpoint import restore_params
from alignax.models import Model
from alignax.models.gguf import load_gguf, read_gguf_config
from alignax.models.hf import load_hf, model_config_from_hf, read_hf_config
from alignax.workdir import flatten_config, guard_workdir, is_pretrained_checkpoint


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
    start/resume to history.jsonl (`alignax.workdir.guard_workdir`).
    """
    validate_config(config)
    sharding.maybe_initialize_distributed(config)
    mesh = sharding.make_mesh(config.mesh)
    workdir = Path(workdir)
    guard_workdir(config, workdir, allow_config_change)
    return workdir, mesh


# ------------------------------------------------------------------------------ config checks
def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks every `train`, `optimizer` and `eval` section (also nested ones, e.g. a
    pipeline's `stages.sft.train`), every `eval_fraction` and every list of `seeds`; raises
    ValueError naming the full key and the allowed values."""
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
        if prefix + "eval_steps" in flat:
            key = prefix + "eval_steps"
            steps, last = value(key), value(prefix + "steps")
            need(
                key,
                isinstance(steps, list)
                and all(is_int(s) and 0 < s <= last for s in steps)
                and steps == sorted(set(steps)),
                f"increasing steps in [1, {prefix}steps={last}]",
            )
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
        if f".{key}".endswith(".eval.num_prompts") or f".{key}".endswith(".eval.max_new_tokens"):
            need(key, is_int(value(key)) and value(key) >= 0, "an integer >= 0")
        if key.split(".")[-1] == "eval_fraction":
            need(key, isinstance(value(key), float | int) and 0 < value(key) < 1, "in (0, 1)")
        if key.split(".")[-1] == "seeds" and isinstance(value(key), list):
            repeated = sorted({s for s in value(key) if value(key).count(s) > 1})
            need(key, not repeated, f"seeds without repeats (repeated: {repeated})")
    _validate_optimizers(flat, need)


def _validate_optimizers(flat: dict, need) -> None:
    """Every `optimizer` section (alignax.optim): a learning rate that descends, a schedule
    that exists, Adam's betas in [0, 1), no negative decay or warm-up, a positive clip."""

    def number(x):
        return isinstance(x, float | int) and not isinstance(x, bool) and math.isfinite(x)

    rules = {
        "learning_rate": (lambda x: number(x) and x > 0, "a finite number > 0"),
        "warmup_steps": (
            lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0,
            "an integer >= 0",
        ),
        "schedule": (lambda x: x in ("cosine", "constant"), "one of ('cosine', 'constant')"),
        "weight_decay": (lambda x: number(x) and x >= 0, "a finite number >= 0"),
        "b1": (lambda x: number(x) and 0 <= x < 1, "in [0, 1)"),
        "b2": (lambda x: number(x) and 0 <= x < 1, "in [0, 1)"),
        "grad_clip": (lambda x: number(x) and x > 0, "a finite number > 0"),
    }
    for key, x in flat.items():
        *sections, leaf = key.split(".")
        if sections and sections[-1] == "optimizer" and leaf in rules:
            ok, allowed = rules[leaf]
            need(key, ok(x), allowed)


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
    """Fresh sharded params, with the backbone (and any matching heads) taken from `source`
    (default `config.init_from`) when one is named: the final checkpoint of a stage's workdir,
    or a pretrained model (a Hugging Face checkpoint directory or a GGUF file) whose shape is
    `config.model`'s."""
    params = sharding.init_params(model, rng, mesh)
    source = config.init_from if source is None else source
    if not source:
        return params
    if is_pretrained_checkpoint(source):
        return {**params, **pretrained_params(source, config.model, mesh, params)}
    return {**params, **restore_params(Path(source) / "checkpoints", params)}


# Model-config keys that do not change the shape or meaning of the weights.
_RUNTIME_KEYS = ("max_len", "dtype", "param_dtype", "remat", "remat_policy", "dropout_rate")


def checkpoint_shape(config: ml_collections.ConfigDict, overridden: Collection[str]) -> None:
    """Sets `config.model`'s shape from the checkpoint that `config.init_from` (a multi-stage
    run's: `config.base_from`) names (an HF directory, a GGUF file, or a stage's workdir), so
    that a preset need not spell out its shape; a key in `overridden` (set on the command line,
    `model.<key>`) that disagrees with the checkpoint raises naming it. Run-time keys (max_len,
    dtypes, remat) stay the config's."""
    link = "init_from" if config.get("init_from") else "base_from"
    source = config.get(link) or ""
    if not source or "model" not in config:
        return
    runtime = {k: config.model[k] for k in ("max_len", "dtype", "param_dtype")}
    if is_pretrained_checkpoint(source):
        if Path(source).suffix == ".gguf":
            shape = read_gguf_config(source, **runtime)
        else:
            shape = model_config_from_hf(read_hf_config(source), **runtime)
    elif (Path(source) / "config.json").is_file():  # a stage's workdir: the model it trained
        shape = json.loads((Path(source) / "config.json").read_text()).get("model", {})
    else:
        return
    for key, value in shape.items():
        if key in _RUNTIME_KEYS or key not in config.model:
            continue
        if f"model.{key}" in overridden and not same_model_setting(config.model[key], value):
            raise ValueError(
                f"model.{key}={config.model[key]!r} (set on the command line: "
                f"--config.model.{key} or --model) disagrees with the checkpoint "
                f"{link}={source!r} ({key}={value!r}); leave it out to take the checkpoint's"
            )
        config.model[key] = value


def pretrained_params(path: str | Path, model_config, mesh: Mesh, like: dict) -> dict:
    """The entries of `like` (params of `model_config`) that a pretrained checkpoint holds,
    imported with their sharding; a checkpoint of another shape raises naming every key."""
    load = load_gguf if Path(path).suffix == ".gguf" else load_hf
    runtime = {k: model_config[k] for k in ("max_len", "dtype", "param_dtype")}
    imported, params = load(path, mesh=mesh, **runtime)

    differ = [
        f"model.{key}={model_config[key]!r} (the checkpoint's: {imported[key]!r})"
        for key in sorted(imported.keys())
        if key not in _RUNTIME_KEYS
        and key in model_config
        and not same_model_setting(model_config[key], imported[key])
    ]
    if differ:
        raise ValueError(
            f"init_from={str(path)!r} is a model of another shape: "
            + ", ".join(differ)
            + " (alignax/models/presets.py has presets of the supported checkpoints)"
        )
    return {k: params[k] for k in like if k in params}


def same_model_setting(a, b) -> bool:
    """Whether two values of a model-config key agree; a float up to a relative 1e-6 (GGUF
    stores norm_eps in float32)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


def read_summary(workdir: str | Path) -> dict:
    """A finished run's <workdir>/summary.json (`write_summary`; an undefined value is None)."""
    return json.loads(Path(workdir, "summary.json").read_text())


def write_summary(workdir: str | Path, summary: dict) -> None:
    """<workdir>/summary.json, and the same as a two-column table on stdout. An undefined value
    (NaN/Inf, e.g. a correlation over constant lengths) is written as null and shown as
    'undefined'."""
    if jax.process_index() != 0:
        return
    summary = {k: None if is_undefined(v) else v for k, v in summary.items()}
    Path(workdir, "summary.json").write_text(json.dumps(summary, indent=2))
    width = max(len(k) for k in summary)
    print(f"\nsummary ({workdir}):")
    for key, value in summary.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {'undefined' if value is None else shown}")


def is_undefined(value) -> bool:
    """None, NaN or Inf: a statistic with no defined value (e.g. a correlation of constants)."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def example_batch(arrays: dict, batch_size: int) -> dict:
    """The first `batch_size` rows: the shapes a step is compiled for."""
    return {k: v[:batch_size] for k, v in arrays.items()}
