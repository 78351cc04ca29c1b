"""Command line of every experiment script:

    python -m experiments.<name> --config configs/<name>.py:<preset> --workdir runs/<dir> \
        [--config.train.steps=200 ...]

The config is locked, so an override of a key that does not exist fails with the key's name.
Running the same command again on the same workdir resumes from the latest checkpoint; a resume
with a changed config is refused (naming the keys) unless `--allow_config_change` is given, which
history.jsonl in the workdir records.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections


def run_experiment(run: Callable[[ml_collections.ConfigDict, str], dict]) -> None:
    """Parses --config/--workdir and calls `run(config, workdir)` (in a process whose malloc
    uses transparent huge pages: `alignax.runtime`)."""
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
        from alignax.workdir import config_changes_allowed

        with config_changes_allowed(allow_flag.value):
            run(config_flag.value, workdir_flag.value)

    app.run(main)
