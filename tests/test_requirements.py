"""A fresh install gets the versions the suite passed with: every requirement is pinned exactly,
every install reads the lock file, and the README's commands are the ones CI runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = "requirements-lock.txt"
INSTALLED_FILES = ("requirements.txt", "requirements-test.txt", "requirements-data.txt")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[a-z0-9,_-]+\])?==([0-9][0-9A-Za-z.+!-]*)$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(path: Path) -> list[str]:
    """The lines pip reads: comments and blank lines dropped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in _requirements(path):
        if line.startswith("-c "):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: {line!r} is not pinned exactly (name==version)"
        pins[_normalise(match.group(1))] = match.group(3)
    return pins


def test_the_lock_pins_every_package_exactly_once():
    lines = [line for line in _requirements(ROOT / LOCK)]
    names = [_normalise(PIN.match(line).group(1)) for line in lines if PIN.match(line)]
    assert len(names) == len(lines), "every line of the lock is name==version"
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", INSTALLED_FILES)
def test_every_requirement_is_pinned_to_the_locked_version(name):
    lock = _pins(ROOT / LOCK)
    for package, version in _pins(ROOT / name).items():
        assert lock.get(package) == version, (
            f"{name}: {package}=={version}, {LOCK}: {lock.get(package)}"
        )


@pytest.mark.parametrize("name", ("requirements.txt", "requirements-test.txt"))
def test_every_resolving_install_reads_the_lock(name):
    # requirements-data.txt installs with --no-deps: its pins are all it installs.
    assert f"-c {LOCK}" in _requirements(ROOT / name)


def test_ci_runs_the_readme_commands_in_a_fresh_environment():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv" in ci and "README.md" in ci
    section = (ROOT / "README.md").read_text().split("## Two commands", 1)[1].split("\n## ", 1)[0]
    main, tests = re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)
    assert "pip install -r requirements.txt" in main and "experiments.pipeline" in main
    assert "-r requirements-test.txt" in tests and "pytest" in tests
