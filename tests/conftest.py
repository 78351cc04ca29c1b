"""Test set-up: 8 fake CPU devices so sharding is exercised on a laptop.

XLA reads the flag when the backend starts, so it must be set before jax is imported.

The suite runs on two processes (`python -m pytest -n 2 tests`, pytest-xdist): each test module
stays on one process (`ModuleScheduling`), except the notebooks, whose runs are independent and
are spread. The costly fixtures of a module (the end-to-end runs) are session-scoped: a process
may run other modules' tests between two of a module's, and a module-scoped fixture would be torn
down and built again.
"""

import os

# Most of the suite's programs are tiny and compile-bound: XLA's CPU backend at its lowest
# optimisation level (no expensive LLVM passes) compiles them in about half the time
# (tests/test_rl.py: 224 -> 116 CPU-s) but runs them about twice as slowly (a tiny train step
# 110 -> 230 ms), which the long end-to-end runs pay; the whole suite went 36.3 -> 32.5 CPU-min.
# XLA's older elemental emitters instead of its fusion emitters halve the compile time again (the
# DPO-frontier smoke run: 26.8 -> 12.2 s of compiling, 54 -> 46 s in all) for slower long runs
# (the reward model of tests/test_experiments.py: 28 -> 34 s); the suite went 797 -> 623 s on
# one host, run after run. Experiments and benchmarks keep XLA's defaults.
_TEST_XLA_FLAGS = (
    "--xla_force_host_platform_device_count=8",
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
)
os.environ["XLA_FLAGS"] = " ".join((os.environ.get("XLA_FLAGS", ""), *_TEST_XLA_FLAGS)).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import shutil  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402
from xdist.scheduler import LoadScopeScheduling  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
# One persistent compilation cache for the session: the end-to-end runs build new jitted closures
# around the same small models, whose programs are identical; later ones read them back. The
# process that starts the run (pytest-xdist's controller, or the only process) creates it and
# removes it at the end; the xdist workers it spawns inherit its path (the cache is safe for
# concurrent writers).
_CACHE_VARIABLE = "ALIGNAX_TEST_XLA_CACHE"
_owns_cache = _CACHE_VARIABLE not in os.environ
if _owns_cache:
    os.environ[_CACHE_VARIABLE] = tempfile.mkdtemp(prefix="alignax-test-xla-")
_cache_dir = os.environ[_CACHE_VARIABLE]
jax.config.update("jax_compilation_cache_dir", _cache_dir)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def pytest_sessionfinish(session):
    if _owns_cache:
        shutil.rmtree(_cache_dir, ignore_errors=True)


def _runs_a_notebook(nodeid: str) -> bool:
    return nodeid.split("::", 1)[0].endswith("test_notebooks.py")


class ModuleScheduling(LoadScopeScheduling):
    """pytest-xdist's scope scheduling with one scope per test module, and one per notebook test
    (each has its own experiment run). It reads only node ids: xdist's own `--dist loadgroup`
    marks them by setting `item._nodeid`, which pytest 9 no longer reads, and every module's
    session fixtures were silently built on both processes (the pretrain -> SFT -> reward-model
    chain of tests/test_experiments.py among them).

    Scopes are handed out in collection order (`pytest_collection_modifyitems`), not xdist's
    default of the most tests first: that put the notebook tests, one test and a 30-80 s study
    run each, last, where the run could end with one process finishing them while the other
    idled."""

    def _split_scope(self, nodeid: str) -> str:
        return nodeid if _runs_a_notebook(nodeid) else nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config, items):
    """The longest work first, so the two processes finish together: the notebook tests (each a
    study's end-to-end run), then the modules, most tests first (xdist's own order)."""
    size = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        size[module] = size.get(module, 0) + 1

    def order(item):
        module = item.nodeid.split("::", 1)[0]
        return (not _runs_a_notebook(item.nodeid), -size[module], module)

    items.sort(key=order)  # stable: a module's tests keep their order


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's, absent without it
        config.option.loadscopereorder = False


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent without it (-p no:xdist)
def pytest_xdist_make_scheduler(config, log):
    return ModuleScheduling(config, log)
