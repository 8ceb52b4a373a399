"""What the measured figures say, as pure functions of the records (no I/O):

* ``padding_comparison``: the batcher's padding efficiency vs first-come batching of the same
  arrival stream (``fcfs_padding_efficiency``);
* ``ratios``: the service over the naive baseline, the HTTP ceiling and the in-process ceiling;
* ``time_breakdown``: where a service request's time goes, outside and inside the server;
* ``targets``: the product's targets, met or missed;
* ``frontend_batch_ratios`` and ``frontend_targets``: the multi-frontend case's mean batch sizes
  against one process's at the same offered rate;
* ``soak_phase`` and ``recovery``: an overload soak's phases from the client's side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from bench.records import (
    Ceilings,
    FrontendRow,
    FrontendsCase,
    PaddingRow,
    Point,
    RatioRow,
    Recovery,
    SoakPhase,
    Target,
    TimeBreakdown,
)
from bench.servers import ServerKind
from loadtest.engine import PhaseResult
from loadtest.stats import latency_summary_ms, percentiles

# The product's targets at the highest concurrency (v2-binary) and at one client.
CEILING_SHARE_TARGET = 0.70
"""Service sequences/s over the best in-process ORT figure."""
NAIVE_SPEEDUP_TARGET = 3.0
"""Service sequences/s over the naive baseline's."""
PADDING_EFFICIENCY_TARGET = 0.85
"""The batcher's real / padded steps (the CPU policy's own target, ``service.settings``)."""
SINGLE_SEQUENCE_OVERHEAD_TARGET_MS = 3.0
"""c=1 p50 latency over the in-process single-sequence median."""
FRONTEND_BATCH_TOLERANCE = 0.10
"""How far the mean batch with N frontends may be from one process's, at the same offered rate."""


def find(
    points: Sequence[Point], kind: ServerKind, protocol: str, concurrency: int
) -> Point | None:
    """The point of ``kind`` at ``protocol`` and ``concurrency``; None if it was not run."""
    for point in points:
        if (point.kind, point.protocol, point.concurrency) == (kind, protocol, concurrency):
            return point
    return None


# -- padding: the batcher vs first-come batching -------------------------------------------------
def fcfs_padding_efficiency(lengths: Sequence[int], batch_size: int) -> float:
    """Real / padded steps when ``lengths`` (arrival order) are cut into consecutive batches."""
    batch_size = max(1, int(batch_size))
    real = padded = 0
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start : start + batch_size]
        real += sum(chunk)
        padded += len(chunk) * max(chunk)
    return real / padded if padded else 1.0


def padding_comparison(points: Sequence[Point]) -> list[PaddingRow]:
    """For each service point with batches: the batcher's padding efficiency vs FCFS batches of
    the same arrival stream (the requests in the order they were sent) at the same mean batch
    size, and at 64."""
    rows = []
    for point in points:
        size = point.server.get("mean_batch_size")
        if point.kind != "service" or not size:
            continue
        rows.append(
            PaddingRow(
                protocol=point.protocol,
                concurrency=point.concurrency,
                mean_batch_size=size,
                batcher_padding_efficiency=point.server["padding_efficiency"],
                fcfs_same_batch_size=fcfs_padding_efficiency(point.arrival_lengths, round(size)),
                fcfs_batch_64=fcfs_padding_efficiency(point.arrival_lengths, 64),
            )
        )
    return rows


# -- ratios, where the time goes, targets --------------------------------------------------------
def ratios(points: Sequence[Point], ceilings: Ceilings | None) -> list[RatioRow]:
    """Each service point's sequences/s over the naive baseline's and the HTTP ceiling's at the
    same protocol and concurrency, over the best in-process ORT figure, and over ORT on the
    batches the service's policy cuts."""
    rows = []
    best = ceilings.ort_best_seq_per_s if ceilings else None
    formed = list(ceilings.ort_at_batcher_batches.values()) if ceilings else []
    for p in points:
        if p.kind != "service":
            continue
        row = RatioRow(p.protocol, p.concurrency, p.sequences_per_s)
        naive = find(points, "naive", p.protocol, p.concurrency)
        http = find(points, "http-ceiling", p.protocol, p.concurrency)
        if naive and naive.sequences_per_s:
            row.vs_naive = p.sequences_per_s / naive.sequences_per_s
        if http and http.sequences_per_s:
            row.vs_http_ceiling = p.sequences_per_s / http.sequences_per_s
        if best:
            row.vs_ort_ceiling = p.sequences_per_s / best
        if formed:
            row.vs_ort_at_batcher_batches = p.sequences_per_s / formed[0]
        rows.append(row)
    return rows


def time_breakdown(point: Point) -> TimeBreakdown | None:
    """Mean milliseconds per request of a point, outside the server (client, TCP, uvicorn's HTTP
    parsing) and inside it (``lstm_request_latency_seconds``): queue wait, batch compute, and
    the rest (body read, decode, validation, result assembly, encoding, event-loop scheduling).
    None when the server has no request latency figure."""
    server = point.server
    inside = (server.get("request_latency_ms") or {}).get("mean")
    if inside is None:
        return None
    queue = (server.get("queue_wait_ms") or {}).get("mean") or 0.0
    compute = (server.get("batch_compute_ms") or {}).get("mean") or 0.0
    client = point.latency_ms["mean"] or 0.0
    requests = max(1, point.client["ok"])
    server_cpu = point.cpu.server_cores
    return TimeBreakdown(
        protocol=point.protocol,
        concurrency=point.concurrency,
        client_latency_ms=client,
        outside_server_ms=client - inside,
        in_server_ms=inside,
        queue_wait_ms=queue,
        batch_compute_ms=compute,
        rest_in_server_ms=inside - queue - compute,
        server_cpu_ms_per_request=(
            1000 * server_cpu * point.client["elapsed_s"] / requests
            if server_cpu is not None
            else None
        ),
        client_cpu_ms_per_request=1000 * point.client["client_cpu_s"] / requests,
        compute_busy=server.get("compute_busy"),
    )


def breakdowns(points: Sequence[Point]) -> list[TimeBreakdown]:
    """``time_breakdown`` of every service point that has one."""
    found = (time_breakdown(p) for p in points if p.kind == "service")
    return [b for b in found if b is not None]


def targets(
    points: Sequence[Point], ceilings: Ceilings | None, padding: Sequence[PaddingRow], top: int
) -> list[Target]:
    """The targets that the measured figures allow judging, at ``top`` clients (v2-binary)."""
    out = []
    service = find(points, "service", "v2-binary", top)
    naive = find(points, "naive", "v2-binary", top)
    if service and ceilings:
        value = service.sequences_per_s / ceilings.ort_best_seq_per_s
        out.append(
            Target(
                f"service v2-binary c={top} >= {CEILING_SHARE_TARGET:.0%} of the in-process ORT "
                "ceiling",
                value,
                value >= CEILING_SHARE_TARGET,
            )
        )
    if service and naive and naive.sequences_per_s:
        value = service.sequences_per_s / naive.sequences_per_s
        out.append(
            Target(
                f"service v2-binary c={top} >= {NAIVE_SPEEDUP_TARGET:g}x the naive baseline",
                value,
                value >= NAIVE_SPEEDUP_TARGET,
            )
        )
    pad = [r for r in padding if r.protocol == "v2-binary" and r.concurrency == top]
    if pad:
        value = pad[0].batcher_padding_efficiency
        out.append(
            Target(
                f"padding efficiency >= {PADDING_EFFICIENCY_TARGET:g} at c={top}",
                value,
                value >= PADDING_EFFICIENCY_TARGET,
            )
        )
    single = find(points, "service", "v2-binary", 1)
    p50 = single.latency_ms["p50"] if single else None
    if p50 is not None and ceilings:
        value = p50 - ceilings.single_sequence.median_ms
        out.append(
            Target(
                "c=1 p50 latency within a few ms (<= "
                f"{SINGLE_SEQUENCE_OVERHEAD_TARGET_MS:g} ms) of in-process single-sequence",
                value,
                value <= SINGLE_SEQUENCE_OVERHEAD_TARGET_MS,
            )
        )
    return out


# -- the multi-frontend case ---------------------------------------------------------------------
def _one_process(rows: Sequence[FrontendRow]) -> FrontendRow | None:
    """The open-loop row of the service in one process (one worker, models in-process)."""
    for row in rows:
        if (row.mode, row.engine, row.frontends) == ("open", "in-process", 1):
            return row
    return None


def frontend_batch_ratios(rows: Sequence[FrontendRow]) -> list[FrontendRow]:
    """The rows, each open-loop one with ``batch_vs_one_process``: its mean batch size over the
    one-process row's (all open-loop rows share one offered rate). Closed-loop rows, and every
    row when one process formed no batches, are left without."""
    one = _one_process(rows)
    base = one.mean_batch_size if one else None
    return [
        dataclasses.replace(row, batch_vs_one_process=size / base)
        if row.mode == "open" and base and (size := row.mean_batch_size) is not None
        else row
        for row in rows
    ]


def frontend_targets(case: FrontendsCase) -> list[Target]:
    """For each N of frontends feeding one engine: its mean batch size within
    ``FRONTEND_BATCH_TOLERANCE`` of one process's at the same offered rate (not 1/N of it)."""
    out = []
    for row in case.rows:
        ratio = row.batch_vs_one_process
        if row.mode != "open" or row.engine != "separate" or ratio is None:
            continue
        feeding = f"{row.frontends} frontend{'s' if row.frontends > 1 else ''} feeding one engine"
        rate = f"{case.offered_rate:.0f} req/s"
        out.append(
            Target(
                f"mean batch with {feeding} within {FRONTEND_BATCH_TOLERANCE:.0%} of one "
                f"process's at {rate} (ratio)",
                ratio,
                abs(ratio - 1.0) <= FRONTEND_BATCH_TOLERANCE,
            )
        )
        # Larger batches than one process's are not the failure the first target guards
        # against (they come from an engine with less CPU to spare, on a small machine);
        # batches split N ways are.
        out.append(
            Target(
                f"mean batch with {feeding} not split among them: at least "
                f"{1 - FRONTEND_BATCH_TOLERANCE:.0%} of one process's at {rate} (ratio)",
                ratio,
                ratio >= 1.0 - FRONTEND_BATCH_TOLERANCE,
            )
        )
    return out


# -- the overload soak ---------------------------------------------------------------------------
def soak_phase(
    result: PhaseResult, offered_rate: float, seconds: float, deadline_s: float
) -> SoakPhase:
    """An open-loop phase of ``seconds`` at ``offered_rate``, from the client's side: what was
    sent, accepted (200), rejected (429/503) and failed, and the accepted requests' latency
    against the request deadline."""
    status = result.status
    ok = status == 200
    latency = latency_summary_ms(result.latency[ok])
    codes = {int(c): int(n) for c, n in zip(*np.unique(status, return_counts=True), strict=True)}
    p99 = latency["p99"]
    return SoakPhase(
        offered_rate=offered_rate,
        seconds=seconds,
        arrivals=int(len(status)),
        achieved_send_rate=float((status != -1).sum() / seconds),
        by_status=codes,
        accepted=int(ok.sum()),
        rejected_429_503=int(((status == 429) | (status == 503)).sum()),
        server_errors_5xx_not_503=int(((status >= 500) & (status != 503)).sum()),
        no_response=int((status == 0).sum()),
        transport_errors=dict(result.transport_errors),
        dropped_by_client=int((status == -1).sum()),
        accepted_per_s=float(ok.sum() / seconds),
        p50_accepted_ms=latency["p50"],
        p99_accepted_ms=p99,
        max_accepted_ms=latency["max"],
        p99_within_deadline=p99 is not None and p99 <= 1000 * deadline_s,
    )


def recovery(result: PhaseResult, offered_rate: float, baseline_p50_s: float) -> Recovery:
    """Seconds into the recovery phase until every later 1-s bin has its answers back at the
    offered rate (90%) and its median latency within 2x the normal phase's median."""
    ok = result.status == 200
    sent = result.sent[ok]
    latency = result.latency[ok]
    bins = int(np.ceil(result.sent.max())) if len(result.sent) else 0
    good = []
    for k in range(bins):
        mask = (sent >= k) & (sent < k + 1)
        p50 = percentiles(latency[mask], (50,))["p50"]
        rate_ok = mask.sum() >= 0.9 * offered_rate
        good.append(bool(rate_ok and p50 is not None and p50 <= 2 * baseline_p50_s))
    recovered_at = next((k for k in range(bins) if all(good[k:])), None)
    return Recovery(recovered_after_s=recovered_at, good_bins=good)
