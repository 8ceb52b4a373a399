"""``bench.markdown``: numbers and tables as the results files print them."""

from __future__ import annotations

from bench.markdown import fmt, table


def test_fmt_separates_thousands_and_marks_the_unknown() -> None:
    assert fmt(12345.678) == "12,345.7"
    assert fmt(0.5, 3) == "0.500"
    assert fmt(1234.5, 0) == "1,234"  # round half to even
    assert fmt(None, 2) == "-"


def test_table_has_a_header_a_rule_and_a_line_per_row() -> None:
    assert table(["a", "b c"], [[1, "x"], [None, 2.5]]) == [
        "| a | b c |",
        "|---|---|",
        "| 1 | x |",
        "| None | 2.5 |",
    ]
    assert table(["only"], []) == ["| only |", "|---|"]
