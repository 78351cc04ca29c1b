"""Where a result came from: the command that wrote it and the commit it ran at."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def command() -> str:
    """The command line as a user would type it (`python -m experiments.x ...`)."""
    argv = list(sys.argv)
    script = Path(argv[0]) if argv else Path("python")
    if script.suffix == ".py" and script.resolve().is_relative_to(ROOT):
        module = ".".join(script.resolve().relative_to(ROOT).with_suffix("").parts)
        return shlex.join(["python", "-m", module, *argv[1:]])
    return shlex.join(["python", *argv])


def provenance() -> dict:
    """{'command', 'commit' (short hash, or 'unknown' outside a git checkout), 'dirty'}."""
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {"command": command(), "commit": commit, "dirty": dirty}
