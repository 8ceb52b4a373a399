"""``bench.streams``: the streaming case run end to end on the tiny repository's unidirectional
model (``tiny_uni``: stacked [8, 12], F=5), its record as JSON and as markdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.records import StreamModeRow, StreamsCase, to_json
from bench.report import streams_markdown
from bench.streams import measure_streams

FLAGS = ["--warmup-batch-sizes", "[1]", "--warmup-lengths", "[4]"]


def _row(mode: str, diff: float | None) -> StreamModeRow:
    return StreamModeRow(mode, 10, 0, 5.0, 50.0, 1.5, 3.0, 400.0, 2, 3.0, diff)


def test_the_table_has_a_row_per_mode() -> None:
    case = StreamsCase(
        "tiny_uni", "v2-json", 3, 10, 4, 5.0, 1.0,
        [_row("server-state", None), _row("client-state", 2e-7), _row("resend-history", 1e-7)],
    )  # fmt: skip
    text = "\n".join(streams_markdown(case))
    assert "| server-state | 5.0 | 50.0 | 1.50 | 3.00 | 400 | 0 | 2 | - |" in text
    assert "| client-state |" in text and "2.0e-07" in text
    assert to_json(case)["rows"][1]["max_diff_vs_server_state"] == 2e-7


def test_the_case_serves_the_same_streams_three_ways(model_repository: Path) -> None:
    case = measure_streams(
        model_repository, "tiny_uni", 5, streams=3, chunk_steps=4, chunks_per_stream=3,
        think_ms=2.0, seconds=1.0, service_flags=FLAGS, protocol="v2-json",
        warmup_s=0.2,
    )  # fmt: skip
    assert [r.mode for r in case.rows] == ["server-state", "client-state", "resend-history"]
    by_mode = {r.mode: r for r in case.rows}
    for row in case.rows:
        assert row.chunks_ok > 0 and row.chunks_failed == 0, row
        assert row.streams_finished >= 3
        assert row.steps_per_s == pytest.approx(4 * row.chunks_per_s)
        assert row.latency_p50_ms is not None and row.latency_p99_ms is not None
        assert row.latency_p50_ms <= row.latency_p99_ms
    assert by_mode["server-state"].max_diff_vs_server_state is None
    for mode in ("client-state", "resend-history"):
        diff = by_mode[mode].max_diff_vs_server_state
        assert diff is not None and diff < 1e-4, (mode, diff)
    # Client-held state ships (c, h) both ways; re-sent history grows with the stream.
    sizes = {r.mode: r.request_bytes_per_chunk or 0.0 for r in case.rows}
    assert sizes["server-state"] < sizes["client-state"]
    assert sizes["server-state"] < sizes["resend-history"]
    assert by_mode["server-state"].streams_live_max is not None
