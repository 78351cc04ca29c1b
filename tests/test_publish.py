"""Results reach the README only through `experiments.publish`, with their provenance."""

import os
import re
from pathlib import Path

import pytest

from alignax.provenance import command, provenance, written_by
from experiments.publish import publish


def test_publish_replaces_only_its_block_and_copies_figures(tmp_path):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "results.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    (run / "figures" / "curve.png").write_bytes(b"png")
    (run / "figures" / "curve.pdf").write_bytes(b"pdf")
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n<!-- results:x -->\nold 0.99\n<!-- /results:x -->\n"
        "<!-- results:y -->\nkeep\n<!-- /results:y -->\n"
    )
    target = publish("x", run, readme=readme, results_root=tmp_path / "docs" / "results")
    text = readme.read_text()
    assert "old 0.99" not in text and "| 1 | 2 |" in text and "keep" in text
    assert "![curve](docs/results/x/curve.png)" in text
    assert (target / "curve.pdf").read_bytes() == b"pdf"
    publish("x", run, readme=readme, results_root=tmp_path / "docs" / "results")
    assert readme.read_text() == text  # publishing twice changes nothing


def test_publish_refuses_a_missing_block_or_results(tmp_path):
    (tmp_path / "run").mkdir()
    readme = tmp_path / "README.md"
    readme.write_text("no blocks\n")
    with pytest.raises(FileNotFoundError, match="results.md"):
        publish("x", tmp_path / "run", readme=readme, results_root=tmp_path)
    (tmp_path / "run" / "results.md").write_text("r\n")
    with pytest.raises(ValueError, match="results:x"):
        publish("x", tmp_path / "run", readme=readme, results_root=tmp_path)


def test_provenance_names_a_commit_and_a_runnable_command(monkeypatch):
    import experiments.publish as module

    monkeypatch.setattr("sys.argv", [module.__file__, "x", "runs/x"])
    assert command() == "python -m experiments.publish x runs/x"
    info = provenance()
    assert len(info["commit"]) == 12 and isinstance(info["dirty"], bool)
    # The machine is named precisely: a result reproduces bit for bit only on the host it names.
    assert f"{os.cpu_count()} cores" in info["machine"] and "jax " in info["machine"]
    if Path("/proc/cpuinfo").exists():
        assert re.search(r"family \d+ model \d+ stepping \d+", info["machine"])
        assert re.search(r"CPU flags #[0-9a-f]{8}", info["machine"])
    sentence = written_by({**info, "dirty": True})
    assert sentence.startswith("Written by `python -m experiments.publish x runs/x` at commit")
    assert sentence.endswith(f"(with uncommitted changes) on {info['machine']}")
