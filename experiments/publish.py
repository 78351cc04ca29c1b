"""Copies an experiment's written results into docs/results/ and the README's table at a glance.

    python -m experiments.publish overoptimization runs/overopt
    python -m experiments.publish pipeline runs/pipeline

Takes <workdir>/results.md (which names the command and commit that wrote it), the figures in
<workdir>/figures/ and the data a notebook reads (results.json, config.json) to
docs/results/<name>/, and replaces the block between `<!-- results:<name> -->` and
`<!-- /results:<name> -->` in the page of docs/results/ that holds it with that text and the PNG
figures. A study with a notebook (NOTEBOOKS) has it executed through a Jupyter kernel on the
published data and stored with its outputs, and the README's "Results at a glance" table is
rebuilt from every published study's results.json (each study's `glance`). Every result number
in the docs and the README is placed by this command, never typed by hand; rerun the experiment
and this command whenever code behind a result changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import re
import shutil
from pathlib import Path

import ml_collections
import nbformat
from nbclient import NotebookClient

from alignax.study import split_results_record

ROOT = Path(__file__).resolve().parents[1]

# The studies of the table at a glance, in its order: each is experiments.<name>, declaring
# `PAPER` (what it reproduces) and `glance(results) -> list[str]` (its verdicts, from results.json).
STUDIES = (
    "pipeline",
    "overoptimization",
    "instructgpt",
    "dpo_frontier",
    "rlvr",
    "prm",
    "rm_ensembles",
    "rm_ensembles_ppo",
    "weak_to_strong",
    "pluralism",
    "length_bias",
    "online_offline",
    "iterated_rlhf",
    "rlaif",
    "dpa",
    "critique_revision",
    "judge_drift",
)


@dataclasses.dataclass(frozen=True)
class Notebook:
    """The notebook (notebooks/<file>) that explores a study's published data: results.md and
    DATA, and the training logs of `logs` (globs in the workdir), copied with their paths."""

    file: str
    logs: tuple[str, ...] = ()


NOTEBOOKS = {
    "pipeline": Notebook("walkthrough.ipynb", logs=("seed*/ppo/metrics.jsonl",)),
    "overoptimization": Notebook("overoptimization.ipynb"),
    "instructgpt": Notebook("instructgpt.ipynb"),
    "dpo_frontier": Notebook("dpo_frontier.ipynb"),
    "rlvr": Notebook("rlvr.ipynb", logs=("seed*/grpo/metrics.jsonl",)),
    "prm": Notebook(
        "prm.ipynb",
        logs=tuple(
            f"seed*/{stage}/metrics.jsonl" for stage in ("prm_checker", "prm_monte_carlo", "orm")
        ),
    ),
    "rm_ensembles": Notebook("rm_ensembles.ipynb", logs=("seed*/member*/metrics.jsonl",)),
    "rm_ensembles_ppo": Notebook("rm_ensembles_ppo.ipynb", logs=("seed0/ppo_*/metrics.jsonl",)),
    "weak_to_strong": Notebook("weak_to_strong.ipynb"),
    "pluralism": Notebook("pluralism.ipynb"),
    "length_bias": Notebook("length_bias.ipynb"),
    "online_offline": Notebook("online_offline.ipynb"),
    "iterated_rlhf": Notebook("iterated_rlhf.ipynb", logs=("seed0/ppo_*/metrics.jsonl",)),
    "rlaif": Notebook("rlaif.ipynb"),
    "dpa": Notebook("dpa.ipynb"),
    "critique_revision": Notebook("critique_revision.ipynb"),
    "judge_drift": Notebook("judge_drift.ipynb"),
}
DATA = ("results.json", "config.json")  # what every study's data holds besides results.md
SIGNIFICANT_DIGITS = 6  # published data keeps float32's precision, not float64's


def publish(name: str, workdir: str | Path, root: Path = ROOT, execute: bool = True) -> Path:
    """Publishes `workdir`'s results as `name` under `root` (see the module docstring); with
    `execute=False` the notebook is left as it is. Returns docs/results/<name>/."""
    workdir, results_root = Path(workdir), root / "docs" / "results"
    results = workdir / "results.md"
    if not results.is_file():
        raise FileNotFoundError(f"{results} does not exist: run the experiment first")
    page = page_of(name, results_root)  # checked before anything is written
    target = results_root / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy(results, target / "results.md")
    for data in DATA:
        if (workdir / data).is_file():
            compact = _rounded(json.loads((workdir / data).read_text()))
            (target / data).write_text(json.dumps(compact, indent=1) + "\n")
    notebook = NOTEBOOKS.get(name)
    for pattern in notebook.logs if notebook else ():
        for log in sorted(workdir.glob(pattern)):
            (target / log.relative_to(workdir)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, target / log.relative_to(workdir))
    figures = sorted((workdir / "figures").glob("*.p[dn][gf]"))
    for figure in figures:
        shutil.copy(figure, target / figure.name)
    body = results.read_text().rstrip() + "\n"
    for figure in figures:
        if figure.suffix == ".png":
            body += f"\n![{figure.stem}]({name}/{figure.name})\n"
    replace_block(page, f"results:{name}", body)
    replace_block(root / "README.md", "glance", glance_table(results_root))
    if execute and notebook:  # last: a cell that fails names itself and leaves the notebook as is
        execute_notebook(root / "notebooks" / notebook.file)
    return target


def page_of(name: str, results_root: Path) -> Path:
    """The page of docs/results/ holding the block `name`: exactly one must."""
    begin = f"<!-- results:{name} -->"
    pages = [p for p in sorted(results_root.glob("*.md")) if begin in p.read_text()]
    if len(pages) != 1:
        found = ", ".join(p.name for p in pages) or "none"
        raise ValueError(f"one page of {results_root} must hold the block {begin} (found: {found})")
    return pages[0]


def replace_block(path: Path, marker: str, body: str) -> None:
    begin, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    text = path.read_text()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{path} has no block {begin} ... {end} to replace")
    path.write_text(pattern.sub(lambda _: f"{begin}\n{body}{end}", text))


def glance_table(results_root: Path) -> str:
    """The README's table at a glance: a row per study of STUDIES published with its data, its
    verdicts computed by the study's `glance` from that results.json."""
    lines = [
        "| study | reproduces | verdicts (95% intervals over seeds) |",
        "|---|---|---|",
    ]
    for name in STUDIES:
        data = results_root / name / "results.json"
        if not data.is_file():
            continue
        module = importlib.import_module(f"experiments.{name}")
        heading = (results_root / name / "results.md").read_text().splitlines()[0]
        title = heading.lstrip("#").strip()
        page = page_of(name, results_root).name
        verdicts = "; ".join(module.glance(json.loads(data.read_text())))
        lines.append(f"| [{title}](docs/results/{page}) | {module.PAPER} | {verdicts} |")
    return "\n".join(lines) + "\n"


def rendered_report(name: str, results_root: Path) -> str:
    """The report that experiments.<name> writes from its published data (docs/results/<name>/:
    config.json, and results.json with the timings and provenance the runner adds to the
    analysis), as the study's command would write it at this commit."""
    data = results_root / name
    config = ml_collections.ConfigDict(json.loads((data / "config.json").read_text()))
    results, timings, prov = split_results_record(json.loads((data / "results.json").read_text()))
    return importlib.import_module(f"experiments.{name}").report(config, results, timings, prov)


def execute_notebook(path: Path, timeout: int = 1200) -> None:
    """Runs every cell of the notebook at `path` through a Jupyter kernel started in its folder,
    on the published data (ALIGNAX_WORKDIR unset) and on the CPU (an installed libtpu would
    otherwise print its probe of a TPU into the outputs), and stores it with its outputs."""
    notebook = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k != "ALIGNAX_WORKDIR"}
    env.setdefault("JAX_PLATFORMS", "cpu")
    resources = {"metadata": {"path": str(path.parent)}}
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources=resources)
    client.execute(env=env)
    nbformat.write(notebook, path)


def _rounded(value):
    """`value` with every float kept to SIGNIFICANT_DIGITS (NaN and infinities as they are)."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the block and docs/results/ folder to write")
    parser.add_argument("workdir", help="the experiment's workdir (holds results.md)")
    args = parser.parse_args()
    print(f"published {publish(args.name, args.workdir)}")


if __name__ == "__main__":
    main()
