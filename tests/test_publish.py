"""Results reach docs/results/ and the README only through `experiments.publish`, with their
provenance."""

import json
import math
import os
import re
from pathlib import Path

import pytest

from alignax.provenance import command, provenance, written_by
from experiments.publish import NOTEBOOKS, STUDIES, glance_table, publish, rendered_report

ROOT = Path(__file__).resolve().parents[1]


def _repository(tmp_path: Path) -> Path:
    """A repository's README (with its table at a glance) and one page of two blocks."""
    root = tmp_path / "repo"
    (root / "docs" / "results").mkdir(parents=True)
    (root / "README.md").write_text("intro\n<!-- glance -->\nold\n<!-- /glance -->\nend\n")
    (root / "docs" / "results" / "page.md").write_text(
        "prose\n<!-- results:x -->\nold 0.99\n<!-- /results:x -->\n"
        "<!-- results:y -->\nkeep\n<!-- /results:y -->\n"
    )
    return root


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "results.md").write_text("### X\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    (run / "figures" / "curve.png").write_bytes(b"png")
    (run / "figures" / "curve.pdf").write_bytes(b"pdf")
    (run / "results.json").write_text(json.dumps({"gold": [0.123456789123, float("nan")], "n": 3}))
    (run / "config.json").write_text(json.dumps({"seed": 0}))
    return run


def test_publish_replaces_only_its_block_and_copies_figures_and_data(tmp_path):
    root, run = _repository(tmp_path), _run(tmp_path)
    target = publish("x", run, root=root, execute=False)
    page = (root / "docs" / "results" / "page.md").read_text()
    assert "old 0.99" not in page and "| 1 | 2 |" in page and "keep" in page
    assert page.startswith("prose\n") and "![curve](x/curve.png)" in page  # relative to the page
    assert (target / "curve.pdf").read_bytes() == b"pdf"
    data = json.loads((target / "results.json").read_text())  # float32's precision, NaN kept
    assert data["gold"][0] == 0.123457 and math.isnan(data["gold"][1]) and data["n"] == 3
    assert json.loads((target / "config.json").read_text()) == {"seed": 0}
    # The table at a glance is rebuilt (here from no published study: its header).
    readme = (root / "README.md").read_text()
    assert "old" not in readme and "| study | reproduces |" in readme and readme.endswith("end\n")
    publish("x", run, root=root, execute=False)
    assert (root / "docs" / "results" / "page.md").read_text() == page  # twice changes nothing


def test_publish_refuses_a_missing_block_or_results_and_writes_nothing(tmp_path):
    root = _repository(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="results.md"):
        publish("x", tmp_path / "empty", root=root)
    run = _run(tmp_path)
    with pytest.raises(ValueError, match="results:z"):
        publish("z", run, root=root)
    (root / "docs" / "results" / "other.md").write_text("<!-- results:x -->\n<!-- /results:x -->\n")
    with pytest.raises(ValueError, match="other.md, page.md"):  # a block lives on one page
        publish("x", run, root=root)
    assert (
        not (root / "docs" / "results" / "x").exists()
        and not (root / "docs" / "results" / "z").exists()
    )


def test_the_readme_table_at_a_glance_is_rebuilt_from_the_published_data():
    """Every study of the table is published with its data, and the README's table is what its
    `glance` computes from that data now: a changed verdict function or data shows here."""
    results_root = ROOT / "docs" / "results"
    for name in STUDIES:
        assert (results_root / name / "results.json").is_file(), f"publish {name} with its data"
    assert set(STUDIES) <= set(NOTEBOOKS), "every study of the table has its notebook"
    table = glance_table(results_root)
    assert len(table.splitlines()) == 2 + len(STUDIES)
    assert "nan" not in table
    assert f"<!-- glance -->\n{table}<!-- /glance -->" in (ROOT / "README.md").read_text(), (
        "the README's table at a glance is stale: rerun python -m experiments.publish"
    )


NUMBER = re.compile(r"\d+(?:\.\d+)?")


def same_but_for_rounding(got: str, want: str) -> bool:
    """The texts are equal where they hold no number, and each pair of numbers is printed to the
    same decimals and differs by at most one in the last: published data keeps 6 significant
    digits, so a value on a rounding tie may print one unit apart."""
    if NUMBER.sub("#", got) != NUMBER.sub("#", want):
        return False
    for a, b in zip(NUMBER.findall(got), NUMBER.findall(want), strict=True):
        decimals = len(a.partition(".")[2])
        if decimals != len(b.partition(".")[2]) or abs(float(a) - float(b)) > 1.01 * 10**-decimals:
            return False
    return True


def test_numbers_are_the_same_but_for_rounding_and_words_are_the_same():
    assert same_but_for_rounding("gold -2.01 ± 0.57 (6)", "gold -2.00 ± 0.57 (6)")
    assert same_but_for_rounding("9.99 of 10", "10.00 of 10")
    assert not same_but_for_rounding("gold -2.03", "gold -2.01")  # two units apart
    assert not same_but_for_rounding("gold -2.0", "gold -2.00")  # another precision
    assert not same_but_for_rounding("gold 1.00", "gold: 1.00")
    assert not same_but_for_rounding("3 seeds", "3 seeds, 2 processes")


@pytest.mark.parametrize("name", STUDIES)
def test_a_published_block_is_what_its_report_writes_from_its_published_data(name):
    """The study's `report`, run on its published config and results, writes its published
    results.md: a change to a report reaches the README only with the block published again
    (python -m experiments.publish <name> <workdir>, after re-running the study on its workdir)."""
    results_root = ROOT / "docs" / "results"
    published = (results_root / name / "results.md").read_text()
    assert same_but_for_rounding(rendered_report(name, results_root), published), (
        f"experiments.{name}.report no longer writes docs/results/{name}/results.md from its "
        "published data: re-make the block"
    )


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


def test_every_local_link_of_the_readme_and_the_results_pages_resolves():
    """The README and docs/results/ link each other, their figures and the notebooks: every
    relative link names a file that exists (anchors and web addresses are not checked)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs" / "results").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#", 1)[0]
            if path and "://" not in path:
                assert (page.parent / path).exists(), f"{page.relative_to(ROOT)} links {target}"
