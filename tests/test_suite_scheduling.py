"""The suite's process scheduling (tests/conftest.py): a module's session fixtures are built on
one process only, and the notebooks spread."""

from tests.conftest import ModuleScheduling, pytest_collection_modifyitems


def test_a_module_is_one_scope_and_each_notebook_its_own():
    scope = ModuleScheduling._split_scope
    assert scope(None, "tests/test_a.py::test_x") == "tests/test_a.py"
    assert scope(None, "tests/test_a.py::test_y[ppo-shape0]") == "tests/test_a.py"
    assert scope(None, "tests/test_a.py::TestGroup::test_z") == "tests/test_a.py"
    one, two = (f"tests/test_notebooks.py::test_notebook_runs[{n}.ipynb]" for n in "ab")
    assert scope(None, one) == one != scope(None, two) == two


def test_the_notebook_runs_go_first_then_the_modules_with_the_most_tests():
    class Item:
        def __init__(self, nodeid):
            self.nodeid = nodeid

    ids = [
        "tests/test_a.py::test_1",
        "tests/test_b.py::test_2",
        "tests/test_b.py::test_1",
        "tests/test_notebooks.py::test_runs[x.ipynb]",
        "tests/test_c.py::test_1",
    ]
    items = [Item(i) for i in ids]
    pytest_collection_modifyitems(None, items)
    assert [i.nodeid for i in items] == [ids[3], ids[1], ids[2], ids[0], ids[4]]
