"""The results files: each run as JSON (``bench.records.to_json``) and as markdown a person
reads, side by side as ``<stem>.json`` and ``<stem>.md`` (``write_results``).

* ``suite_markdown``: ``python -m bench`` (``bench/results/{cpu,gpu}-<date>.md``);
* ``soak_markdown``: ``python -m bench.soak`` (``bench/results/soak-<date>.md``);
* ``describe_machine``: the machine a run measured on, for both.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from bench.markdown import fmt, table
from bench.records import (
    FrontendsCase,
    HandoffCost,
    Machine,
    PrecisionCase,
    PrecisionRow,
    SoakReport,
    StreamsCase,
    SuiteReport,
    to_json,
)

MACHINE_NAME = "2-core CPU dev machine"


def write_results(stem: Path, record: SuiteReport | SoakReport, markdown: str) -> tuple[Path, Path]:
    """``<stem>.json`` and ``<stem>.md``, their folder created if need be; their paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_file, markdown_file = Path(f"{stem}.json"), Path(f"{stem}.md")
    json_file.write_text(json.dumps(to_json(record), indent=1))
    markdown_file.write_text(markdown)
    return json_file, markdown_file


def describe_machine(provider: str, onnxruntime_version: str) -> Machine:
    cores = os.cpu_count() or 1
    if provider == "cuda":
        name = _gpu_name()
    else:
        name = MACHINE_NAME if cores == 2 else f"{cores}-core CPU machine"
    return Machine(
        name=name,
        cpu_model=_cpu_model(),
        cores=cores,
        platform=platform.platform(),
        python=platform.python_version(),
        onnxruntime=onnxruntime_version,
    )


def _gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"
    return f"{out.strip().splitlines()[0]} ({os.cpu_count()} CPU cores)"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# -- python -m bench ---------------------------------------------------------------------------
def suite_markdown(report: SuiteReport) -> str:
    m = report.machine
    lines = [
        f"# {'GPU' if report.provider == 'cuda' else 'CPU'} benchmark, {report.date} — {m.name}",
        "",
        f"{m.cpu_model}, {m.cores} cores; Python {m.python}, onnxruntime "
        f"{m.onnxruntime}; model `{report.model}`, lengths {report.lengths}, one "
        f"sequence per request; {report.seconds:g} s per point after "
        f"{report.warmup_s:g} s of warm-up, {report.client_processes} client process(es) on "
        "the same machine (the load client competes with the server for the same cores).",
        "",
        f"Command: `{report.command}`",
        "",
    ]
    ceilings = report.ceilings
    if ceilings:
        runners = list(ceilings.rows[0].seq_per_s)
        lines += ["## In-process ceiling (sequences/s)", ""]
        lines += table(
            ["batch", "order", "padding eff.", *runners],
            (
                [row.batch, row.order, f"{row.padding_efficiency:.3f}"]
                + [fmt(row.seq_per_s.get(runner), 0) for runner in runners]
                for row in ceilings.rows
            ),
        )
        single, best_at = ceilings.single_sequence, ceilings.ort_best_at
        lines += [
            "",
            f"`ort_{ceilings.parallel_runs}x1`: {ceilings.parallel_runs} runs in parallel, "
            f"1 intra-op thread each (the service's CPU configuration); `ort_1x{ceilings.cores}`"
            f": one run at a time on {ceilings.cores} threads. Best ORT: "
            f"**{fmt(ceilings.ort_best_seq_per_s, 0)} seq/s** (batch "
            f"{best_at.batch}, {best_at.order}). One "
            f"sequence alone, one thread: median {single.median_ms:.2f} ms per run. Other "
            f"processes used {fmt(ceilings.other_cpu_cores, 2)} cores meanwhile.",
            "",
        ]
    lines += ["## Servers under closed-loop load", ""]
    lines += table(
        ["server", "protocol", "clients", "req/s", "seq/s", "p50 ms", "p99 ms", "failed",
         "batch", "pad. eff.", "server CPU", "client CPU", "other CPU"],
        (
            [p.kind, p.protocol, p.concurrency, fmt(p.client["requests_per_s"]),
             fmt(p.sequences_per_s), fmt(p.latency_ms["p50"], 2), fmt(p.latency_ms["p99"], 2),
             p.client["failed"], fmt(p.server.get("mean_batch_size"), 2),
             fmt(p.server.get("padding_efficiency"), 3), fmt(p.cpu.server_cores, 2),
             fmt(p.cpu.client_cores, 2), fmt(p.cpu.other_cores, 2)]
            for p in report.points
        ),
    )  # fmt: skip
    lines += [
        "",
        "server / client / other CPU: cores used on average (CPU seconds per wall second) by "
        "the server process, by the load client, and by everything else on the machine (from "
        "/proc/stat; more than ~0.1 means the machine was not quiet and the point is suspect).",
        "",
        "## Ratios (sequences/s)",
        "",
    ]
    lines += table(
        ["protocol", "clients", "service seq/s", "/ naive baseline", "/ HTTP ceiling",
         "/ best ORT", "/ ORT on the batcher's batches"],
        (
            [r.protocol, r.concurrency, fmt(r.service_seq_per_s), f"{fmt(r.vs_naive, 2)}x",
             fmt(r.vs_http_ceiling, 2), fmt(r.vs_ort_ceiling, 2),
             fmt(r.vs_ort_at_batcher_batches, 2)]
            for r in report.ratios
        ),
    )  # fmt: skip
    if report.padding:
        lines += [
            "",
            "## Padding efficiency: the batcher vs first-come batching of the same arrivals",
            "",
        ]
        lines += table(
            ["protocol", "clients", "mean batch", "batcher", "FCFS, same batch size",
             "FCFS, 64"],
            (
                [r.protocol, r.concurrency, f"{r.mean_batch_size:.2f}",
                 f"{r.batcher_padding_efficiency:.3f}", f"{r.fcfs_same_batch_size:.3f}",
                 f"{r.fcfs_batch_64:.3f}"]
                for r in report.padding
            ),
        )  # fmt: skip
    if report.frontends:
        lines += ["", *frontends_markdown(report.frontends)]
    if report.streams:
        lines += ["", *streams_markdown(report.streams)]
    if report.precisions:
        lines += ["", *precisions_markdown(report.precisions)]
    if report.breakdown or report.handoff:
        lines += ["", "## Where the time goes (service, mean ms per request)", ""]
    if report.breakdown:
        lines += table(
            ["protocol", "clients", "client latency", "outside server", "in server",
             "queue wait", "batch compute", "rest in server", "server CPU/req",
             "client CPU/req", "compute busy"],
            (
                [b.protocol, b.concurrency]
                + [fmt(value, 2) for value in (
                    b.client_latency_ms, b.outside_server_ms, b.in_server_ms, b.queue_wait_ms,
                    b.batch_compute_ms, b.rest_in_server_ms, b.server_cpu_ms_per_request,
                    b.client_cpu_ms_per_request, b.compute_busy)]
                for b in report.breakdown
            ),
        )  # fmt: skip
        lines += [
            "",
            "in server: from the handler's start to its return (`lstm_request_latency_seconds`); "
            "batch compute: the mean time of the batch a request's sequence ran in (pad, ORT, "
            "split); rest: body read, decoding, validation, result assembly and encoding, and "
            "waiting for the event loop; outside: client, TCP and uvicorn's HTTP parsing. "
            "compute busy: batches running at once on average.",
        ]
    if report.handoff:
        lines += [""] if report.breakdown else []  # the heading's blank line otherwise
        lines.append(handoff_line(report.handoff))
    if report.targets:
        lines += ["", "## Targets", ""]
        lines += [
            f"- {t.target}: **{t.value:.2f}** — {'met' if t.met else 'MISSED'}"
            for t in report.targets
        ]
    lines.append("")
    return "\n".join(lines)


def handoff_line(cost: HandoffCost) -> str:
    """The hand-off's cost per request, as one line of "Where the time goes"."""
    return (
        f"- Hand-off, frontend to engine and back (`bench.handoff`, ZeroMQ IPC, one process, "
        f"inference skipped): **{cost.handoff_cpu_us:,.0f} µs of server CPU per request** "
        f"({cost.remote_cpu_us:,.0f} µs through the hand-off vs {cost.direct_cpu_us:,.0f} µs "
        f"straight to the batcher; wall {cost.remote_wall_us:,.0f} vs "
        f"{cost.direct_wall_us:,.0f} µs per request), one sequence of {cost.length} x "
        f"{cost.features} float32 per request, {cost.in_flight} in flight, {cost.requests} "
        "requests. Paid only with `--engine separate` (`--workers N`)."
    )


def frontends_markdown(case: FrontendsCase) -> list[str]:
    """The multi-frontend case: a row per process model and load, and what the ratio says."""
    lines = [
        f"## Frontends feeding one engine ({case.protocol})",
        "",
        f"Closed loop at {case.concurrency} clients; open loop at **{case.offered_rate:,.0f} "
        f"req/s** offered to every process model ({case.rate_source}).",
        "",
    ]
    lines += table(
        ["process model", "load", "req/s", "p50 ms", "p99 ms", "failed", "mean batch",
         "pad. eff.", "server CPU", "batch / one process"],
        (
            [r.label,
             f"closed, c={r.concurrency}" if r.mode == "closed"
             else f"open, {fmt(r.offered_rate, 0)} req/s",
             fmt(r.requests_per_s), fmt(r.latency_ms["p50"], 2), fmt(r.latency_ms["p99"], 2),
             r.client["failed"], fmt(r.mean_batch_size, 2),
             fmt(r.server.get("padding_efficiency"), 3), fmt(r.cpu.server_cores, 2),
             fmt(r.batch_vs_one_process, 2)]
            for r in case.rows
        ),
    )  # fmt: skip
    lines += [
        "",
        "batch / one process: the mean batch size over that of the service in one process at "
        "the same offered rate. N frontends feeding one engine should form the batches one "
        "process forms (about 1); the old model (`--engine in-process --workers N`: a batcher "
        "per worker) splits them N ways. server CPU: cores used by every process of the "
        "server (supervisor, frontends, engine).",
    ]
    return lines


def streams_markdown(case: StreamsCase) -> list[str]:
    """The streaming case: a row per way of holding the state, and what the columns mean."""
    lines = [
        f"## Streams: server-held state, client-held state, re-sent history ({case.protocol})",
        "",
        f"`{case.model}`, {case.streams} concurrent streams of {case.chunks_per_stream} chunks "
        f"x {case.chunk_steps} steps, {case.think_ms:g} ms think time between a stream's "
        f"chunks, {case.seconds:g} s per mode.",
        "",
    ]
    lines += table(
        ["mode", "chunks/s", "steps/s", "p50 ms", "p99 ms", "request bytes/chunk", "failed",
         "streams finished", "max diff vs server-state"],
        (
            [r.mode, fmt(r.chunks_per_s), fmt(r.steps_per_s), fmt(r.latency_p50_ms, 2),
             fmt(r.latency_p99_ms, 2), fmt(r.request_bytes_per_chunk, 0), r.chunks_failed,
             r.streams_finished,
             "-" if r.max_diff_vs_server_state is None else f"{r.max_diff_vs_server_state:.1e}"]
            for r in case.rows
        ),
    )  # fmt: skip
    lines += [
        "",
        "steps/s counts each chunk's new steps only (re-sent history runs more). max diff: the "
        "largest difference of a stream's last probabilities from the server-state row's, over "
        "the streams both finished (the same streams: it should stay under 1e-4).",
    ]
    return lines


def precisions_markdown(case: PrecisionCase) -> list[str]:
    """The precision case: speed and test accuracy of each variant, side by side."""
    cells = list(case.rows[0].in_process_seq_per_s) if case.rows else []
    fp32 = next((r for r in case.rows if r.precision == "fp32"), None)
    lines = [
        "## Precision: fp32 and its variants, speed and accuracy",
        "",
        f"In process: ONNX Runtime seq/s on the ceiling's sample, {case.parallel_runs} runs in "
        f"parallel, per batch size and order. Served: `{case.protocol}`, {case.concurrency} "
        "clients. Test accuracy: JapaneseVowels (370 sequences), as the export measured it.",
        "",
    ]

    def speedup(row: PrecisionRow, cell: str) -> str:
        if fp32 is None or row is fp32:
            return fmt(row.in_process_seq_per_s[cell], 0)
        ratio = row.in_process_seq_per_s[cell] / fp32.in_process_seq_per_s[cell]
        return f"{row.in_process_seq_per_s[cell]:,.0f} ({ratio:.2f}x)"

    lines += table(
        ["precision", "model", "provider", "test accuracy", *(f"batch {c}" for c in cells),
         "served seq/s", "served p99 ms", "served / naive fp32"],
        (
            [r.precision, f"`{r.model}`", r.provider.removesuffix("ExecutionProvider"),
             "-" if r.test_accuracy is None else f"{r.test_accuracy:.2%}",
             *(speedup(r, c) for c in cells), fmt(r.service_seq_per_s, 0),
             fmt(r.service_p99_ms, 1),
             "-" if case.naive_fp32_seq_per_s is None or r.service_seq_per_s is None
             else f"{r.service_seq_per_s / case.naive_fp32_seq_per_s:.2f}x"]
            for r in case.rows
        ),
    )  # fmt: skip
    return lines


# -- python -m bench.soak ----------------------------------------------------------------------
def soak_markdown(report: SoakReport) -> str:
    lines = [
        f"# Overload soak, {report.date} ({report.provider})",
        "",
        f"Command: `{report.command}`; service flags `{report.service_flags}`. Measured "
        f"capacity {report.capacity_req_per_s:.0f} req/s (closed loop, 64 clients); open-loop "
        "Poisson arrivals of one V2 binary request (one sequence, U[10,200] steps) each.",
        "",
    ]
    lines += table(
        ["phase", "offered req/s", "sent req/s", "accepted/s", "429+503", "5xx (not 503)",
         "no answer", "p50 / p99 accepted (ms)", "p99 within deadline"],
        (
            [name, f"{p.offered_rate:.0f}", f"{p.achieved_send_rate:.0f}",
             f"{p.accepted_per_s:.0f}", p.rejected_429_503, p.server_errors_5xx_not_503,
             p.no_response, f"{p.p50_accepted_ms or 0:.0f} / {p.p99_accepted_ms or 0:.0f}",
             p.p99_within_deadline]
            for name, p in report.phases.items()
        ),
    )  # fmt: skip
    probe = report.rejections_seen_by_probe
    recovery = report.phases["recovery"].recovery if "recovery" in report.phases else None
    lines += [
        "",
        f"- Accepted answers checked against in-process ORT: {report.accepted_answers_checked}"
        f", wrong: {report.accepted_answers_wrong} (max abs error "
        f"{report.max_abs_error_vs_ort:.1e}).",
        f"- Rejections seen by a side probe during the overload: {probe.count} (statuses "
        f"{probe.statuses}), all with Retry-After: {probe.all_have_retry_after}.",
        "- Recovery: throughput and median latency back to normal "
        f"{recovery.recovered_after_s if recovery else None} s into the recovery phase.",
        "- Server memory (RSS, MiB): "
        + ", ".join(f"{k} {v:.0f}" for k, v in report.rss_mib.items() if v is not None)
        + ".",
        f"- Server exit code after SIGTERM: {report.server_exit_code}.",
    ]
    return "\n".join(lines) + "\n"
