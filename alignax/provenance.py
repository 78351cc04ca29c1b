"""Where a result came from: the command that wrote it, the commit it ran at and the machine.

The machine is part of a result: XLA compiles for the CPU it runs on (vector width, fused
multiply-add), so the same command at the same commit reproduces a number bit for bit on the
same kind of CPU, and on another kind to the last bits of each operation, which long training
runs amplify into differences within the reported intervals."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import jax

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


def machine() -> str:
    """The processor and accelerator a result was computed on, e.g. 'AMD EPYC (2 cores,
    AVX-512), jax 0.10.2 on cpu'."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
    cores = f"{os.cpu_count()} cores" + (f", {vector}" if vector else "")
    device = jax.devices()[0]
    where = device.platform if device.platform == "cpu" else f"{device.device_kind}"
    return f"{model} ({cores}), jax {jax.__version__} on {where}"


def provenance() -> dict:
    """{'command', 'commit' (short hash, or 'unknown' outside a git checkout), 'dirty',
    'machine'}."""
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {"command": command(), "commit": commit, "dirty": dirty, "machine": machine()}


def written_by(prov: dict) -> str:
    """The sentence that opens every results.md: command, commit (and uncommitted changes),
    machine."""
    changes = " (with uncommitted changes)" if prov["dirty"] else ""
    return (
        f"Written by `{prov['command']}` at commit `{prov['commit']}`{changes} on {prov['machine']}"
    )
