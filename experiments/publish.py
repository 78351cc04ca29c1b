"""Copies an experiment's written results into the repository and the README.

    python -m experiments.publish overoptimization runs/overopt
    python -m experiments.publish pipeline runs/pipeline

Takes <workdir>/results.md (which names the command and commit that wrote it) and the figures in
<workdir>/figures/ to docs/results/<name>/, and replaces the README block between
`<!-- results:<name> -->` and `<!-- /results:<name> -->` with that table and the PNG figures.
Every result number in the README is placed there by this command, never typed by hand; rerun
the experiment and this command whenever code behind a result changes.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def publish(
    name: str,
    workdir: str | Path,
    readme: Path = ROOT / "README.md",
    results_root: Path = ROOT / "docs" / "results",
) -> Path:
    workdir = Path(workdir)
    results = workdir / "results.md"
    if not results.is_file():
        raise FileNotFoundError(f"{results} does not exist: run the experiment first")
    target = results_root / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy(results, target / "results.md")
    figures = sorted((workdir / "figures").glob("*.p[dn][gf]"))
    for figure in figures:
        shutil.copy(figure, target / figure.name)
    body = results.read_text().rstrip() + "\n"
    for figure in figures:
        if figure.suffix == ".png":
            relative = (target / figure.name).relative_to(readme.parent)
            body += f"\n![{figure.stem}]({relative.as_posix()})\n"
    begin, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    text = readme.read_text()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no block {begin} ... {end} to replace")
    readme.write_text(pattern.sub(lambda _: f"{begin}\n{body}{end}", text))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the README block and docs/results/ folder to write")
    parser.add_argument("workdir", help="the experiment's workdir (holds results.md)")
    args = parser.parse_args()
    print(f"published {publish(args.name, args.workdir)}")


if __name__ == "__main__":
    main()
