"""How often each verdict of `benchmarks.run` holds over several of its runs on one host:

    python -m benchmarks.verdicts --out runs/spread runs/bench1 runs/bench2 ... runs/bench
    python -m experiments.publish speed_spread runs/spread

Reads each run's results.json and tabulates, per target, its value in every run that measured it
and how many runs passed; a verdict reproduces when at least 4 of 5 runs agree.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alignax.provenance import provenance, written_by
from benchmarks.common import markdown_table
from benchmarks.run import DPO_TARGET, ROOFLINE_TARGET, SAMPLING_TARGET, TUNIX_TARGET

# (target, path into results.json, threshold, unit): a fraction of the roofline or a speed-up.
TARGETS = (
    ("DPO step >= 75% of the roofline", ("dpo", "alignax", "roofline_fraction"), ROOFLINE_TARGET),
    (
        "the same, LM head at responses",
        ("dpo", "alignax, LM head at responses", "roofline_fraction"),
        ROOFLINE_TARGET,
    ),
    (
        "the same, reference precomputed",
        ("dpo", "alignax, reference precomputed", "roofline_fraction"),
        ROOFLINE_TARGET,
    ),
    (
        "the same, bf16 compute (bf16 peak)",
        ("dpo", "alignax, bf16 compute", "roofline_fraction"),
        ROOFLINE_TARGET,
    ),
    ("DPO step >= 1.5x TRL's", ("dpo", "TRL", "speedup"), DPO_TARGET),
    ("DPO step >= 1.5x Tunix's", ("dpo", "Tunix", "speedup"), TUNIX_TARGET),
    ("SFT step >= 75%", ("steps", "SFT", "roofline_fraction"), ROOFLINE_TARGET),
    ("reward-model step >= 75%", ("steps", "reward model", "roofline_fraction"), ROOFLINE_TARGET),
)
SAMPLING = ("64", "256")


def values(record: dict) -> dict[str, float]:
    """{target: value} of the targets one run's results.json measured."""
    out = {}
    for target, (bench, side, key), _ in TARGETS:
        found = record.get(bench, {}).get("sides", {}).get(side, {}).get(key)
        if found is not None:
            out[target] = found
    for new_tokens in SAMPLING:
        found = record.get("sampling", {}).get(new_tokens, {}).get("speedup")
        if found is not None:
            out[f"sampling >= 2x `generate`, {new_tokens} new tokens"] = found
    return out


def thresholds() -> dict[str, float]:
    out = {target: threshold for target, _, threshold in TARGETS}
    for new_tokens in SAMPLING:
        out[f"sampling >= 2x `generate`, {new_tokens} new tokens"] = SAMPLING_TARGET
    return out


def table(runs: list[dict]) -> str:
    """One row per target some run measured: its values in run order and the verdict count."""
    measured = [values(record) for record in runs]
    rows = []
    for target, threshold in thresholds().items():
        seen = [m[target] for m in measured if target in m]
        if not seen:
            continue
        fraction = threshold < 1
        shown = ", ".join(f"{v:.1%}" if fraction else f"{v:.2f}x" for v in seen)
        passed = sum(v >= threshold for v in seen)
        if passed in (0, len(seen)):
            verdict = f"{'PASS' if passed else 'FAIL'} {len(seen)} of {len(seen)}"
        else:
            failed = len(seen) - passed
            verdict = f"PASS {passed}, FAIL {failed}"
            if max(passed, failed) < 0.8 * len(seen):
                verdict += ": does not reproduce"
        rows.append([target, shown, verdict])
    return markdown_table(["target", "runs, in order", "verdicts"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="workdirs of benchmarks.run, in run order")
    parser.add_argument("--out", default="runs/spread")
    args = parser.parse_args()
    runs = [json.loads((Path(run) / "results.json").read_text()) for run in args.runs]
    commits = sorted({run["provenance"].get("commit", "?")[:12] for run in runs})
    text = "\n".join(
        [
            "### How often each verdict holds",
            "",
            written_by(provenance())
            + f", from {len(runs)} runs of `benchmarks.run` on this host (commit "
            + ", ".join(f"`{c}`" for c in commits)
            + ").",
            "",
            table(runs),
        ]
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
