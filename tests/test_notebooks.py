"""Notebooks run: every code cell of each notebook executes, in order, in one namespace, on the
workdir of a `:runlocal` run of its experiment."""

import json
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def overoptimization_run(tmp_path_factory):
    """The over-optimisation experiment end to end at toy sizes: every stage runs and writes
    its results, criteria and figures."""
    from configs import overoptimization as config_module
    from experiments import overoptimization

    workdir = tmp_path_factory.mktemp("overopt")
    summary = overoptimization.run(config_module.get_config("runlocal"), workdir)
    results = json.loads((workdir / "results.json").read_text())
    assert set(results["criteria"]) == {"B1", "B2", "B3", "B4", "B5"}
    for curve in results["best_of_n"].values():
        # Standardised on the pool: best-of-1 is the pool mean, 0; KL estimates under the bound.
        assert abs(curve[0]["gold"]) < 1e-9 and abs(curve[0]["proxy"]) < 1e-9
        assert all(r["kl_pool"] <= r["kl_bound"] + 1e-9 for r in curve)
    # The oracle selects by gold, so no proxy's selection beats it at any n.
    oracle = [r["gold"] for r in results["oracle"]]
    for curve in results["best_of_n"].values():
        assert all(r["gold"] <= o + 1e-9 for r, o in zip(curve, oracle))
    assert results["rl"] and all(len(points) >= 2 for points in results["rl"].values())
    for name in ("best_of_n_noise0", "best_of_n_noise25", "rl"):
        assert (workdir / "figures" / f"{name}.png").exists()
        assert (workdir / "figures" / f"{name}.pdf").exists()
    assert "Written by" in (workdir / "results.md").read_text()
    assert summary["seconds/total"] > 0
    return workdir


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch, request):
    matplotlib.use("Agg")
    monkeypatch.chdir(ROOT)
    if path.name == "overoptimization.ipynb":
        monkeypatch.setenv("ALIGNAX_WORKDIR", str(request.getfixturevalue("overoptimization_run")))
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
