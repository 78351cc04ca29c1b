"""Process set-up for the command-line entry points (experiments, benchmarks).

XLA's CPU runtime allocates a step's temporary buffers afresh at every call, and glibc's malloc
hands large ones back to the kernel when they are freed, so every step touches hundreds of MB of
new 4 KiB pages: the benchmark's DPO step took about 133,000 page faults and 0.25 s of system
time per step (a quarter of its CPU time). Asking malloc for transparent huge pages
(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, glibc >= 2.35) cuts that to about 2,100 faults and
halves the system time. Tunables are read when a process starts, so the entry points re-execute
themselves once with the tunable set.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
_THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_pages_available() -> bool:
    """Linux with glibc >= 2.35 and transparent huge pages not switched off."""
    if sys.platform != "linux":
        return False
    libc, version = platform.libc_ver()
    try:
        major_minor = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    if libc != "glibc" or major_minor < (2, 35):
        return False
    try:
        return "[never]" not in _THP_SETTING.read_text()
    except OSError:
        return False


def huge_pages_on() -> bool:
    """Whether this process was started with a malloc huge-pages tunable."""
    return "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", "")


def use_transparent_huge_pages() -> None:
    """Re-executes this process (same interpreter, same arguments) with the huge-pages tunable
    added to GLIBC_TUNABLES; returns at once where it is set already or unavailable."""
    if huge_pages_on() or not huge_pages_available():
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    env = {**os.environ, "GLIBC_TUNABLES": ":".join(filter(None, (tunables, HUGE_PAGES_TUNABLE)))}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
