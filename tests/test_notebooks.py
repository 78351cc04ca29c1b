"""Notebooks run: every code cell of each notebook executes, in order, in one namespace."""

import json
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(ROOT)
    namespace = {}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
    if path.name == "walkthrough.ipynb":
        # The DPO cell's learned policy must match the closed form it prints next to it.
        jax = namespace["jax"]
        learned = jax.nn.softmax(namespace["logits"])
        closed = jax.nn.softmax(namespace["ref_logps"] + namespace["reward"] / namespace["beta"])
        assert float(abs(learned - closed).sum()) / 2 < 1e-3
