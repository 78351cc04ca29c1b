"""The entry points re-execute once with glibc's huge-pages malloc tunable (alignax.runtime)."""

import os
import subprocess
import sys

import pytest

from alignax import runtime


def test_re_executes_once_with_the_tunable_added(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime.os, "execve", lambda *args: calls.append(args))
    monkeypatch.setattr(runtime, "huge_pages_available", lambda: True)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    runtime.use_transparent_huge_pages()
    ((executable, argv, env),) = calls
    assert executable == sys.executable and argv[1:] == sys.orig_argv[1:]
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.trim_threshold=0:glibc.malloc.hugetlb=1"
    # Already set (the re-executed process), or not available: no second exec.
    monkeypatch.setenv("GLIBC_TUNABLES", env["GLIBC_TUNABLES"])
    runtime.use_transparent_huge_pages()
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setattr(runtime, "huge_pages_available", lambda: False)
    runtime.use_transparent_huge_pages()
    assert len(calls) == 1


@pytest.mark.skipif(not runtime.huge_pages_available(), reason="needs Linux, glibc >= 2.35, THP")
def test_a_real_process_comes_back_with_the_tunable_and_its_arguments():
    code = (
        "import os, sys; from alignax.runtime import use_transparent_huge_pages; "
        "use_transparent_huge_pages(); print(os.environ['GLIBC_TUNABLES'], sys.argv[1:])"
    )
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", code, "a", "b"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip() == "glibc.malloc.hugetlb=1 ['a', 'b']"
