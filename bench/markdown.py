"""The markdown writer of every results file (``bench.report``): numbers and tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def fmt(value: float | None, digits: int = 1) -> str:
    """``value`` with thousands separators and ``digits`` decimals; ``-`` when unknown."""
    return "-" if value is None else f"{value:,.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a markdown table: the header, its rule, then one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines
