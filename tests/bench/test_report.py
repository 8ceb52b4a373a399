"""``bench.report``: the results files of the suite and of the soak, from records built by
hand."""

from __future__ import annotations

import json
from pathlib import Path

from bench.records import (
    CeilingCell,
    CeilingRow,
    Ceilings,
    CeilingSample,
    CpuUse,
    FrontendRow,
    FrontendsCase,
    HandoffCost,
    Machine,
    PaddingRow,
    Point,
    ProbeRejections,
    RatioRow,
    Recovery,
    ServerStart,
    SingleSequence,
    SoakPhase,
    SoakReport,
    SuiteReport,
    Target,
    TimeBreakdown,
    to_json,
)
from bench.report import describe_machine, soak_markdown, suite_markdown, write_results

MACHINE = Machine("test box", "Some CPU", 2, "Linux", "3.11.9", "1.31.1")


def suite(with_ceilings: bool = True) -> SuiteReport:
    server = {"mean_batch_size": 4.25, "padding_efficiency": 0.9123}
    client = {"concurrency": 16, "requests_per_s": 1234.56, "sequences_per_s": 1234.56,
              "latency_ms": {"p50": 1.234, "p99": None}, "failed": 0, "server": server}  # fmt: skip
    point = Point("service", "v2-binary", client, CpuUse(0.8, 0.3, 1.2, 0.1))
    ceilings = Ceilings(
        ort_at_batcher_batches={"16 waiting": 900.0},
        other_cpu_cores=None,
        sample=CeilingSample(64, "U[10,200]", 5),
        cores=2,
        parallel_runs=2,
        rows=[CeilingRow(16, "sorted", 0.987, {"ort_2x1": 1456.4, "ort_1x2": 1244.0})],
        ort_best_seq_per_s=1456.4,
        ort_best_at=CeilingCell(16, "sorted"),
        single_sequence=SingleSequence(0.9, 1.0, 64),
    )
    return SuiteReport(
        date="2026-12-01", command="python -m bench --quick", machine=MACHINE, provider="cpu",
        model="bilstm", model_file="m.onnx", lengths="10:200", seconds=2.0, warmup_s=0.5,
        client_processes=1, servers={"service": ServerStart(1.5, "service")},
        ceilings=ceilings if with_ceilings else None, points=[point],
        ratios=[RatioRow("v2-binary", 16, 1234.56, vs_ort_ceiling=0.85)],
        padding=[PaddingRow("v2-binary", 16, 4.25, 0.9123, 0.61, 0.55)],
        breakdown=[TimeBreakdown("v2-binary", 16, 5.0, 1.0, 4.0, 1.5, 2.0, 0.5, None, 0.2, 0.7)],
        targets=[Target("padding efficiency >= 0.85 at c=16", 0.9123, True)],
        load_average_at_start=(1.0, 1.0, 1.0), load_average_at_end=None, wall_s=12.0,
    )  # fmt: skip


def test_the_suite_markdown_has_every_table() -> None:
    lines = suite_markdown(suite()).splitlines()
    assert lines[0] == "# CPU benchmark, 2026-12-01 — test box"
    assert "Command: `python -m bench --quick`" in lines
    assert lines[lines.index("## In-process ceiling (sequences/s)") + 2 :][:3] == [
        "| batch | order | padding eff. | ort_2x1 | ort_1x2 |",
        "|---|---|---|---|---|",
        "| 16 | sorted | 0.987 | 1,456 | 1,244 |",
    ]
    assert (
        "| service | v2-binary | 16 | 1,234.6 | 1,234.6 | 1.23 | - | 0 | 4.25 | 0.912 | "
        "0.80 | 0.30 | 0.10 |"
    ) in lines
    assert "| v2-binary | 16 | 1,234.6 | -x | - | 0.85 | - |" in lines
    assert "| v2-binary | 16 | 4.25 | 0.912 | 0.610 | 0.550 |" in lines
    assert "| v2-binary | 16 | 5.00 | 1.00 | 4.00 | 1.50 | 2.00 | 0.50 | - | 0.20 | 0.70 |" in lines
    assert lines[-3:] == ["## Targets", "", "- padding efficiency >= 0.85 at c=16: **0.91** — met"]
    bare = suite_markdown(suite(with_ceilings=False))
    assert "In-process ceiling" not in bare and "## Servers under closed-loop load" in bare


def test_the_frontends_case_and_the_handoff_have_their_sections() -> None:
    report = suite()
    report.handoff = HandoffCost("bilstm", 3000, 64, 105, 32, 15.2, 340.6, 325.4, 16.0, 280.3)
    client = {"requests_per_s": 640.26, "latency_ms": {"p50": 9.5, "p99": 31.25}, "failed": 0,
              "server": {"mean_batch_size": 3.8, "padding_efficiency": 0.9512}}  # fmt: skip
    rows = [
        FrontendRow("2 frontends + engine", 2, "separate", "closed", 64, None, client,
                    CpuUse(server_cores=1.5)),
        FrontendRow("2 frontends + engine", 2, "separate", "open", None, 500.0, client,
                    batch_vs_one_process=0.95),
    ]  # fmt: skip
    report.frontends = FrontendsCase("v2-binary", 64, 500.0, "0.8 x the first row", rows)
    lines = suite_markdown(report).splitlines()
    start = lines.index("## Frontends feeding one engine (v2-binary)")
    assert lines[start + 2] == (
        "Closed loop at 64 clients; open loop at **500 req/s** offered to every process model "
        "(0.8 x the first row)."
    )
    assert lines[start + 4 : start + 8] == [
        "| process model | load | req/s | p50 ms | p99 ms | failed | mean batch | pad. eff. | "
        "server CPU | batch / one process |",
        "|---|---|---|---|---|---|---|---|---|---|",
        "| 2 frontends + engine | closed, c=64 | 640.3 | 9.50 | 31.25 | 0 | 3.80 | 0.951 | "
        "1.50 | - |",
        "| 2 frontends + engine | open, 500 req/s | 640.3 | 9.50 | 31.25 | 0 | 3.80 | 0.951 | "
        "- | 0.95 |",
    ]
    where = lines.index("## Where the time goes (service, mean ms per request)")
    assert start < where
    handoff = next(line for line in lines[where:] if line.startswith("- Hand-off"))
    assert "**325 µs of server CPU per request** (341 µs through the hand-off vs 15 µs" in handoff
    assert "one sequence of 105 x 32 float32 per request, 64 in flight, 3000 requests" in handoff
    report.breakdown = []  # the hand-off alone still has its section
    alone = suite_markdown(report).splitlines()
    where = alone.index("## Where the time goes (service, mean ms per request)")
    assert alone[where + 2].startswith("- Hand-off")
    written = json.loads(json.dumps(to_json(report)))
    assert written["handoff"]["handoff_cpu_us"] == 325.4
    assert written["frontends"]["rows"][1]["batch_vs_one_process"] == 0.95


def test_write_results_writes_the_json_and_the_markdown(tmp_path: Path) -> None:
    report = suite()
    paths = write_results(tmp_path / "out" / "cpu-2026-12-01", report, "text\n")
    assert paths == (
        tmp_path / "out" / "cpu-2026-12-01.json",
        tmp_path / "out" / "cpu-2026-12-01.md",
    )
    written = json.loads((tmp_path / "out" / "cpu-2026-12-01.json").read_text())
    assert written == json.loads(json.dumps(to_json(report)))
    assert list(written)[:3] == ["date", "command", "machine"]
    assert written["ceilings"]["rows"][0]["ort_2x1_seq_per_s"] == 1456.4
    assert written["points"][0]["other_cpu_cores"] == 0.1
    assert (tmp_path / "out" / "cpu-2026-12-01.md").read_text() == "text\n"


def test_the_soak_markdown_has_a_row_per_phase() -> None:
    def phase(name: str, rate: float, recovered: Recovery | None = None) -> SoakPhase:
        return SoakPhase(
            offered_rate=rate, seconds=1.0, arrivals=10, achieved_send_rate=rate - 1,
            by_status={200: 9, 429: 1}, accepted=9, rejected_429_503=1,
            server_errors_5xx_not_503=0, no_response=0, transport_errors={},
            dropped_by_client=0, accepted_per_s=9.0, p50_accepted_ms=5.4,
            p99_accepted_ms=None if name == "overload" else 21.0, max_accepted_ms=30.0,
            p99_within_deadline=True, recovery=recovered,
        )  # fmt: skip

    report = SoakReport(
        command="python -m bench.soak", date="2026-12-01", provider="cpu",
        service_flags="--request-timeout-s 10", request_deadline_s=10.0,
        capacity_req_per_s=840.4,
        phases={"normal": phase("normal", 420.2), "overload": phase("overload", 3360.0),
                "recovery": phase("recovery", 420.2, Recovery(2, [False, False, True]))},
        rejections_seen_by_probe=ProbeRejections(3, [429], True),
        accepted_answers_checked=27, accepted_answers_wrong=0, max_abs_error_vs_ort=1.5e-7,
        rss_mib={"start": 100.4, "after_overload": None}, server_exit_code=0,
    )  # fmt: skip
    lines = soak_markdown(report).splitlines()
    assert lines[0] == "# Overload soak, 2026-12-01 (cpu)"
    assert lines[4:7] == [
        "| phase | offered req/s | sent req/s | accepted/s | 429+503 | 5xx (not 503) | "
        "no answer | p50 / p99 accepted (ms) | p99 within deadline |",
        "|---|---|---|---|---|---|---|---|---|",
        "| normal | 420 | 419 | 9 | 1 | 0 | 0 | 5 / 21 | True |",
    ]
    assert "| overload | 3360 | 3359 | 9 | 1 | 0 | 0 | 5 / 0 | True |" in lines
    assert lines[-5:-1] == [
        "- Accepted answers checked against in-process ORT: 27, wrong: 0 (max abs error 1.5e-07).",
        "- Rejections seen by a side probe during the overload: 3 (statuses [429]), all "
        "with Retry-After: True.",
        "- Recovery: throughput and median latency back to normal 2 s into the recovery phase.",
        "- Server memory (RSS, MiB): start 100.",
    ]
    assert lines[-1] == "- Server exit code after SIGTERM: 0."


def test_describe_machine_names_the_cores() -> None:
    machine = describe_machine("cpu", "1.31.1")
    assert machine.onnxruntime == "1.31.1" and machine.cores >= 1
    assert machine.name in ("2-core CPU dev machine", f"{machine.cores}-core CPU machine")
