"""The test suite's own layout: shared helpers live in tests/helpers.py (or conftest.py), so no
test module imports from another one (a module's private helper changed for its own tests
would break another module's)."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_no_test_module_imports_another():
    offenders = {
        path.name: sorted(m for m in _imported_modules(path) if m.startswith("tests.test_"))
        for path in sorted(TESTS.glob("*.py"))
    }
    assert not {name: found for name, found in offenders.items() if found}


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    path = tmp_path / "test_example.py"
    path.write_text("def test_x():\n    from tests.test_rl import EOS\n")
    assert _imported_modules(path) == {"tests.test_rl"}
