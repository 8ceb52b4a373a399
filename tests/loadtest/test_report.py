"""``loadtest.report``: the concurrency levels of a sweep."""

from __future__ import annotations

from loadtest.report import sweep_levels


def test_sweep_levels_double_up_to_the_maximum() -> None:
    assert sweep_levels(1) == [1]
    assert sweep_levels(64) == [1, 2, 4, 8, 16, 32, 64]
    assert sweep_levels(24) == [1, 2, 4, 8, 16, 24]
