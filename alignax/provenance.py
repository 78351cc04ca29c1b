"""Where a result came from: the command that wrote it, the commit it ran at and the machine.

The machine is part of a result: XLA compiles for the CPU it runs on (vector width, fused
multiply-add), so the same command at the same commit reproduces a number bit for bit on the
host it names, and on another host, even one sold under the same name, only to the last bits of
each operation, which long training runs amplify into differences that the reported intervals
must cover. `machine()` names the CPU precisely enough to tell such hosts apart."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import zlib
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


def _cpu_info() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where there is none)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def _caches() -> str:
    """The unified caches, e.g. 'L2 1024K, L3 32768K' (empty where sysfs does not say)."""
    sizes = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text()
            if kind.strip() == "Unified":
                sizes.append(f"L{level} {(index / 'size').read_text().strip()}")
        except OSError:
            continue
    return ", ".join(sizes)


def machine() -> str:
    """The processor and accelerator a result was computed on, precisely enough to tell two
    hosts of one name apart: e.g. 'AMD EPYC (family 25 model 17 stepping 1; L2 1024K, L3
    32768K; 2 cores, AVX-512; CPU flags #3f2a91c0), jax 0.10.2 on cpu'. The flags' checksum
    stands for the instruction-set features XLA compiles for."""
    info = _cpu_info()
    model = info.get("model name") or platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
    parts = []
    if "cpu family" in info:
        parts.append(
            f"family {info['cpu family']} model {info.get('model', '?')} "
            f"stepping {info.get('stepping', '?')}"
        )
    caches = _caches()
    if caches:
        parts.append(caches)
    parts.append(f"{os.cpu_count()} cores" + (f", {vector}" if vector else ""))
    if flags:
        parts.append(f"CPU flags #{zlib.crc32(' '.join(sorted(flags)).encode()):08x}")
    device = jax.devices()[0]
    where = device.platform if device.platform == "cpu" else f"{device.device_kind}"
    return f"{model} ({'; '.join(parts)}), jax {jax.__version__} on {where}"


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
