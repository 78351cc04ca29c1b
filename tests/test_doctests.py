"""Every docstring example in alignax/ runs and prints what it shows: `python -m pytest -n 2
tests` runs them (no `--doctest-modules` needed), one test per module with examples, failing with
doctest's report.

Options are pytest's doctest defaults (ELLIPSIS: `1.2130...` matches any digits after). The
examples print rounded Python floats and lists, never arrays, devices or shardings, so their
output is the same under this suite's 8 fake CPU devices and XLA flags (tests/conftest.py) as
under `python -m pytest --doctest-modules alignax`, which loads no conftest.

Every alignax module is imported: with requirements.txt installed, none needs optional data (the
packages of requirements-data.txt are looked up when a function reads them, not at import).
The only modules not imported are scripts (`__main__.py`: importing one runs it); they must hold
no examples.
"""

import doctest
import importlib
import re
from pathlib import Path

import pytest

import alignax

PACKAGE_DIR = Path(alignax.__file__).parent
# A line that starts a doctest example (continuation lines start with "...").
EXAMPLE_LINE = re.compile(r"^\s*>>>", re.MULTILINE)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}
SCRIPTS = sorted(name for name in SOURCES if name.endswith(".__main__"))
MODULES = sorted(set(SOURCES) - set(SCRIPTS))
WITH_EXAMPLES = [name for name in MODULES if EXAMPLE_LINE.search(SOURCES[name].read_text())]


def run_examples(module) -> tuple[int, int, str]:
    """(examples found, examples failed, doctest's report) for the docstrings of `module`."""
    tests = [test for test in doctest.DocTestFinder().find(module) if test.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report, attempted, failed = [], 0, 0
    for test in tests:
        result = runner.run(test, out=report.append)
        attempted, failed = attempted + result.attempted, failed + result.failed
    return attempted, failed, "".join(report)


def test_every_module_imports_and_scripts_hold_no_examples():
    """Each alignax module (all but the scripts) imports; a script's examples would never run."""
    failures = {}
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as error:  # reported below, all at once
            failures[name] = repr(error)
    assert not failures, f"alignax modules that do not import: {failures}"
    assert SCRIPTS == ["alignax.losses.__main__"], SCRIPTS
    for name in SCRIPTS:
        assert not EXAMPLE_LINE.search(SOURCES[name].read_text()), f"{name} holds examples"


def test_modules_with_examples_are_found():
    """The source scan finds the modules known to hold examples (a broken scan would make the
    test below run nothing)."""
    assert {
        "alignax.losses.dpo",
        "alignax.losses.dpo_extensions",
        "alignax.losses.grpo",
        "alignax.rl.advantages",
        "alignax.rl.kl_control",
    } <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    """Every `>>>` line of the module is an example the doctest finder reaches (none sits where
    it would never run), and every example prints what its docstring shows."""
    attempted, failed, report = run_examples(importlib.import_module(name))
    written = len(EXAMPLE_LINE.findall(SOURCES[name].read_text()))
    assert attempted == written, (
        f"{name}: {written} '>>>' lines in {SOURCES[name]}, but doctest reaches {attempted} "
        "examples (one outside a module, class or function docstring is never run)"
    )
    assert failed == 0, f"{name}: {failed} of {attempted} examples failed\n{report}"
