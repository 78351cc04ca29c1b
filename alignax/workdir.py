"""What an experiment keeps in its workdir across invocations: compiled programs and wall time.

An experiment's stages are cached in its workdir, so a killed run resumes where it stopped. Two
things make that cheap and honest:

    use_compilation_cache(workdir)        # compiled programs in <workdir>/xla_cache
    accumulate_timings(directory, {...})  # seconds added to <directory>/timings.json

With the cache, a program compiled once (by another seed, another run of the same shapes, or an
earlier invocation) is read back instead of compiled again. With the ledger, a resumed run
reports what the whole result cost, not only the part this invocation did.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax


def use_compilation_cache(workdir: Path, min_compile_seconds: float = 0.5) -> None:
    """Keeps compiled programs of this process in <workdir>/xla_cache, unless it has a cache
    already (the tests set one). Call it before the first compilation, in every process that
    compiles (a worker of `alignax.parallel.run_jobs` starts without one)."""
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(Path(workdir).absolute() / "xla_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)


def accumulate_timings(directory: Path, timings: dict[str, float]) -> dict[str, float]:
    """Adds `timings` (seconds by key) to those in <directory>/timings.json and returns the sums:
    the seconds of every invocation that built the directory."""
    path = Path(directory) / "timings.json"
    before = json.loads(path.read_text()) if path.exists() else {}
    total = dict(before)
    for key, seconds in timings.items():
        total[key] = before.get(key, 0.0) + seconds
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(total, indent=2))
    return total
