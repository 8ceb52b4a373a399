"""Measuring one phase with the server's figures around it, and the text a person reads."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from loadtest.engine import LoadGenerator, Phase, PhaseResult, Progress
from loadtest.prom import MetricsSnapshot, delta, fetch_metrics, server_figures
from loadtest.stats import summarize


def measure_phase(
    generator: LoadGenerator,
    phase: Phase,
    model: str,
    progress: Progress | None = None,
    metrics_url: str | None = None,
    on_measure_start: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], PhaseResult]:
    """Run ``phase``; the summary holds the client's figures and, when the server has
    ``/metrics``, the server's (``server``) over the measured part of the run.
    ``on_measure_start`` runs right after the first metrics snapshot."""
    url = metrics_url or generator.config.url
    before: list[MetricsSnapshot | None] = [None]

    headers = generator.config.extra_headers

    def snapshot() -> None:
        before[0] = fetch_metrics(url, headers=headers)
        if on_measure_start is not None:
            on_measure_start()

    result = generator.run(phase, progress, on_measure_start=snapshot)
    after = fetch_metrics(url, headers=headers)
    summary = summarize(result)
    summary["phase"] = {
        "mode": phase.mode,
        "concurrency": phase.concurrency if phase.mode == "closed" else None,
        "rate": phase.rate if phase.mode == "open" else None,
        "duration_s": phase.duration_s,
        "requests": phase.requests,
        "warmup_s": phase.warmup_s,
    }
    summary["concurrency"] = phase.concurrency if phase.mode == "closed" else None
    if before[0] is not None and after is not None:
        summary["server"] = server_figures(delta(before[0], after), model, result.elapsed_s)
    return summary, result


def sweep_levels(maximum: int) -> list[int]:
    """1, 2, 4, ... up to ``maximum`` (included even when it is not a power of two)."""
    if maximum < 1:
        raise ValueError("the sweep's maximum concurrency must be at least 1")
    levels, level = [], 1
    while level < maximum:
        levels.append(level)
        level *= 2
    return [*levels, maximum]


class ProgressLine:
    """A live line on stderr: rewritten in place on a terminal, every few seconds otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None, every_s: float = 2.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s
        self._last = 0.0

    def __call__(self, elapsed: float, ok: int, failed: int) -> None:
        now = time.monotonic()
        if not self.tty and now - self._last < self.every_s:
            return
        self._last = now
        rate = ok / elapsed if elapsed > 0 else 0.0
        line = f"{self.label}  {elapsed:6.1f} s  {ok:8d} ok  {failed:6d} failed  {rate:8.1f} req/s"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines for one phase."""
    lat, errors = summary["latency_ms"], summary["transport_errors"]
    lines = [
        f"  requests    {summary['ok']} ok, {summary['failed']} failed  by status "
        f"{summary['by_status']}" + (f"  no response: {errors}" if errors else ""),
        f"  throughput  {_fmt(summary['requests_per_s'])} requests/s, "
        f"{_fmt(summary['sequences_per_s'])} sequences/s over {summary['elapsed_s']:.2f} s",
        f"  latency     p50 {_fmt(lat['p50'], 2)} ms  p90 {_fmt(lat['p90'], 2)} ms  "
        f"p99 {_fmt(lat['p99'], 2)} ms  max {_fmt(lat['max'], 2)} ms  "
        f"(mean {_fmt(lat['mean'], 2)})",
    ]
    server = summary.get("server")
    if server:
        queue, compute = server.get("queue_wait_ms") or {}, server.get("batch_compute_ms") or {}
        latency = server.get("request_latency_ms") or {}
        lines.append(
            f"  server      batch {_fmt(server['mean_batch_size'], 2)} sequences, padding "
            f"efficiency {_fmt(server['padding_efficiency'], 3)}, queue wait mean "
            f"{_fmt(queue.get('mean'), 2)} ms (p99 ~{_fmt(queue.get('p99'), 1)}), compute "
            f"{_fmt(compute.get('mean'), 2)} ms/batch (busy {_fmt(server['compute_busy'], 2)}), "
            f"in-server latency mean {_fmt(latency.get('mean'), 2)} ms"
        )
    if summary.get("client_lag_ms"):
        lag = summary["client_lag_ms"]
        late = " (the client could not keep to the schedule)" if (lag["p50"] or 0) > 1 else ""
        lines.append(
            f"  client lag  p50 {_fmt(lag['p50'], 2)} ms  p99 {_fmt(lag['p99'], 2)} ms behind "
            f"the arrival schedule{late}"
        )
    lines.append(
        f"  client CPU  {summary['client_cpu_s']:.2f} s "
        f"({_fmt(summary['client_cpu_per_request_ms'], 3)} ms per request)"
    )
    if summary.get("stopped"):
        lines.append(f"  stopped     {summary['stopped']}")
    for sample in summary.get("error_samples", [])[:2]:
        lines.append(f"  error body  {sample['status']}: {sample['body'][:160]}")
    return "\n".join(lines)


def format_sweep(levels: Sequence[dict[str, Any]]) -> str:
    """One row per concurrency level."""
    header = (
        f"{'clients':>8} {'req/s':>9} {'seq/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'failed':>7} {'batch':>6} {'pad eff':>7}"
    )
    rows = [header]
    for level in levels:
        lat, server = level["latency_ms"], level.get("server") or {}
        rows.append(
            f"{level['concurrency']:>8} {level['requests_per_s']:>9.1f} "
            f"{level['sequences_per_s']:>9.1f} {_fmt(lat['p50'], 2):>8} {_fmt(lat['p90'], 2):>8} "
            f"{_fmt(lat['p99'], 2):>8} {_fmt(lat['max'], 2):>8} {level['failed']:>7} "
            f"{_fmt(server.get('mean_batch_size'), 1):>6} "
            f"{_fmt(server.get('padding_efficiency'), 3):>7}"
        )
    return "\n".join(rows)


def format_verification(report: dict[str, Any]) -> str:
    if not report["checked_responses"]:
        return "  verify      no successful responses to check"
    text = (
        f"  verify      {report['checked_responses']} responses, {report['shape_ok']} with the "
        "expected shapes"
    )
    if report["max_abs_error_vs_ort"] is not None:
        text += (
            f"; {report['ort_sequences_checked']} sequences vs in-process ORT: max abs error "
            f"{report['max_abs_error_vs_ort']:.2e} (tolerance {report['tolerance']:g})"
        )
    text += "  " + ("PASSED" if report["passed"] else "FAILED")
    for failure in report["failures"]:
        text += f"\n    {failure}"
    return text
