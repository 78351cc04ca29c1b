"""The pieces of a study's results.md: markdown tables and their interval cells."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from alignax.analysis.stats import interval_text


def table(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    """A markdown table's lines: the header, its rule and one line per row (cells as str()).

    >>> table(("method", "gold"), [("DPO", 0.5)])
    ['| method | gold |', '|---|---|', '| DPO | 0.5 |']
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]


def intervals(row: dict, columns: Sequence[tuple[str, int]]) -> list[str]:
    """The cells `interval_text(row[key], digits)` of `columns` [(key, digits)].

    >>> intervals({"gold": (1.0, 0.25)}, [("gold", 2)])
    ['1.00 ± 0.25']
    """
    return [interval_text(row[key], digits) for key, digits in columns]


def verdict(passed: bool) -> str:
    """A criterion's outcome as the reports print it.

    >>> verdict(True), verdict(False)
    ('**pass**', '**fail**')
    """
    return f"**{'pass' if passed else 'fail'}**"
