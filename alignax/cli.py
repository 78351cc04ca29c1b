"""Command line of every experiment script:

    python -m experiments.<name> --config configs/<name>.py:<preset> --workdir runs/<dir> \
        [--config.train.steps=200 ...] [--model=small]

The config is locked, so an override of a key that does not exist fails with the key's name.
Running the same command again on the same workdir resumes from the latest checkpoint; a resume
with a changed config is refused (naming the keys) unless `--allow_config_change` is given, which
history.jsonl in the workdir records.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import ml_collections


def run_experiment(run: Callable[[ml_collections.ConfigDict, str], dict]) -> None:
    """Parses --config/--workdir and calls `run(config, workdir)` (in a process whose malloc
    uses transparent huge pages: `alignax.runtime`)."""
    # This re-executes the process (malloc reads its tunables at start): what is imported below
    # is imported once, in the process that runs.
    from alignax.runtime import use_transparent_huge_pages

    use_transparent_huge_pages()
    from absl import app, flags, logging
    from ml_collections import config_flags

    config_flag = config_flags.DEFINE_config_file(
        "config", None, "config file and preset, e.g. configs/sft.py:runlocal", lock_config=True
    )
    workdir_flag = flags.DEFINE_string(
        "workdir", None, "output directory (config.json, metrics.jsonl, checkpoints, plots)"
    )
    model_flag = flags.DEFINE_string(
        "model",
        None,
        "a model preset (alignax/models/presets.py: tiny, small, gpt2_small, smollm2_135m, 1b, "
        "llama3_8b): config.model and config.mesh become the preset's, except the keys "
        "--config.model.<key> / --config.mesh.<key> set",
    )
    allow_flag = flags.DEFINE_bool(
        "allow_config_change",
        False,
        "resume even though the config differs from the checkpoint's (recorded in history.jsonl)",
    )
    flags.mark_flags_as_required(["config", "workdir"])

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.ERROR)  # orbax logs every save and partial restore
        from alignax.experiment import checkpoint_shape
        from alignax.workdir import config_changes_allowed, discard_unused_workdirs_on_error

        config = config_flag.value
        overridden = set(override_keys(sys.argv))
        try:
            if model_flag.value is not None:
                overridden |= apply_model_preset(config, model_flag.value, overridden)
            checkpoint_shape(config, overridden)
        except ValueError as e:
            sys.exit(f"error: {e}")
        with config_changes_allowed(allow_flag.value), discard_unused_workdirs_on_error():
            run(config, workdir_flag.value)

    def parse_flags(argv):
        try:
            return flags.FLAGS(argv)
        except (KeyError, AttributeError):  # ml_collections: an override of a missing key
            message = unknown_override(argv)
            if message is None:
                raise
            sys.exit(f"error: {message}")

    app.run(main, flags_parser=parse_flags)


# Keys renamed to one spelling per concept (docs/config_keys.md): old ending -> new ending.
RENAMED = {
    "sft.num_eval_prompts": "eval.num_prompts",
    "sft.max_new_tokens": "eval.max_new_tokens",
    "preferences.num_eval_prompts": "eval.num_prompts",
    "preferences.max_new_tokens": "eval.max_new_tokens",
    "unpaired.num_eval_prompts": "eval.num_prompts",
    "unpaired.max_new_tokens": "eval.max_new_tokens",
    "rollout.num_eval_prompts": "eval.num_prompts",
    "evaluation.num_prompts": "eval.num_prompts",
    "preferences.num_pairs": "pairs.num_pairs",
    "preferences.num_eval_pairs": "pairs.num_eval_pairs",
    "unpaired.num_pairs": "pairs.num_pairs",
    "unpaired.num_eval_pairs": "pairs.num_eval_pairs",
    "reward.num_comparisons": "pairs.num_pairs",
    "reward.num_eval_comparisons": "pairs.num_eval_pairs",
}


def apply_model_preset(
    config: ml_collections.ConfigDict, preset: str, overridden: set[str]
) -> set[str]:
    """Sets `config.model` and `config.mesh` to `preset`'s (alignax.models.presets), except the
    keys in `overridden` (`model.<key>`, `mesh.<key>`, set on the command line); returns the keys
    it set, which a checkpoint named by `init_from` must then agree with."""
    from alignax.models.presets import mesh_config, model_config

    if "model" not in config:
        raise ValueError(f"--model={preset}: this config has no model section")
    set_keys = set()
    for section, values in (("model", model_config(preset)), ("mesh", mesh_config(preset))):
        for key, value in values.items():
            if f"{section}.{key}" not in overridden and key in config[section]:
                config[section][key] = value
                set_keys.add(f"{section}.{key}")
    return set_keys


def override_keys(argv: list[str]) -> list[str]:
    """The keys of `argv`'s `--config.<key>=...` overrides, in order."""
    return [a.removeprefix("--config.").split("=", 1)[0] for a in argv if a.startswith("--config.")]


def unknown_override(argv: list[str]) -> str | None:
    """For the first `--config.<key>=...` of `argv` whose key the config does not have: a
    message naming the override, the config file and the first missing part of the key (the
    new key, when it is an old spelling of a renamed one; the top-level section of that name,
    when the parent sets it for every stage); None if every override names a key of the
    config."""
    source = next(
        (a.split("=", 1)[1] if "=" in a else argv[i + 1])
        for i, a in enumerate(argv)
        if a.split("=", 1)[0] == "--config"
    )
    config = load_config(source)
    for key in override_keys(argv):
        parts, node = key.split("."), config
        for i, part in enumerate(parts):
            if isinstance(node, ml_collections.ConfigDict) and part in node:
                node = node[part]
                continue
            missing = ".".join(parts[: i + 1])
            message = f"--config.{key}: {source} has no key {missing!r}"
            old = next((o for o in RENAMED if key == o or key.endswith(f".{o}")), None)
            if old is not None:
                new = key.removesuffix(old) + RENAMED[old]
                return f"{message}: renamed, use --config.{new} (docs/config_keys.md)"
            shared = next((k for k in (part, f"{part}s") if i > 0 and k in config), None)
            if shared:  # e.g. stages.sft.model -> model, stages.sft.seed -> seeds
                rest = ".".join([shared, *parts[i + 1 :]])
                message += f"; the top-level {shared!r} applies to every stage: --config.{rest}"
            return message
    return None


def load_config(source: str) -> ml_collections.ConfigDict:
    """The config of `path.py[:arg]`, as `--config` reads it (without overrides)."""
    path, _, arg = source.partition(":")
    spec = importlib.util.spec_from_file_location(f"_config_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()
