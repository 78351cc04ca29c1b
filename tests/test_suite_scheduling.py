"""The suite's process scheduling (tests/conftest.py): a module's session fixtures are built on
one process only, and the notebooks spread."""

from tests.conftest import ModuleScheduling


def test_a_module_is_one_scope_and_each_notebook_its_own():
    scope = ModuleScheduling._split_scope
    assert scope(None, "tests/test_a.py::test_x") == "tests/test_a.py"
    assert scope(None, "tests/test_a.py::test_y[ppo-shape0]") == "tests/test_a.py"
    assert scope(None, "tests/test_a.py::TestGroup::test_z") == "tests/test_a.py"
    one, two = (f"tests/test_notebooks.py::test_notebook_runs[{n}.ipynb]" for n in "ab")
    assert scope(None, one) == one != scope(None, two) == two
