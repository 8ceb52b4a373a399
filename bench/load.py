"""The load a benchmark drives, from ``loadtest``'s client processes on the same machine.

* ``load_server``: every protocol at every concurrency against one server, closed loop, one
  sequence per request; a ``Point`` each, with the CPU that the server, the client and the rest
  of the machine used over it, and sampled answers checked against in-process ORT;
* ``measured_phase``: one phase (closed or open loop) against a server, with that CPU;
* ``RejectionProbe``: during an overload, one request now and then from a thread of its own,
  noting each rejection's status and ``Retry-After`` (for ``bench.soak``).
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.cpu import MachineCpu
from bench.records import CpuUse, Point, Verification
from bench.servers import RunningServer
from loadtest.distributions import IntDistribution, parse_int_distribution
from loadtest.engine import ClientConfig, LoadGenerator, Phase, PhaseResult
from loadtest.payloads import EncodedRequest, PoolSpec, pool_sequences
from loadtest.report import measure_phase
from loadtest.verify import fetch_model_info, verify_samples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadPlan:
    """What ``load_server`` sends: ``protocols`` x ``concurrency`` points of ``seconds`` each
    after ``warmup_s``, from a pool of ``pool`` requests of one sequence of ``lengths`` steps;
    ``server_warmup_s`` of unrecorded load first; ``verify`` answers kept per point."""

    model: str
    protocols: tuple[str, ...]
    concurrency: tuple[int, ...]
    lengths: IntDistribution
    seconds: float
    warmup_s: float = 1.0
    server_warmup_s: float = 3.0
    pool: int = 512
    seed: int = 0
    processes: int = 1
    verify: int = 10

    def pool_spec(self, protocol: str, features: int) -> PoolSpec:
        return PoolSpec(
            protocol=protocol,
            model=self.model,
            features=features,
            lengths=self.lengths,
            sequences_per_request=parse_int_distribution("1"),
            size=self.pool,
            seed=self.seed,
        )


class PhaseCpu:
    """The CPU a server, the load client and the whole machine used over a measured phase:
    ``start`` when the measure starts (``measure_phase``'s ``on_measure_start``), ``finish``
    after it."""

    def __init__(self, server: RunningServer) -> None:
        self._server = server
        self._machine = MachineCpu()
        self._server_before: float | None = None

    def start(self) -> None:
        self._server_before = self._server.cpu_s()
        self._machine.start()

    def finish(self, elapsed_s: float, client_cpu_s: float) -> CpuUse:
        after, busy = self._server.cpu_s(), self._machine.busy_cores()
        use = CpuUse()
        if elapsed_s <= 0:
            return use
        if self._server_before is not None and after is not None:
            use.server_cores = (after - self._server_before) / elapsed_s
        use.client_cores = client_cpu_s / elapsed_s
        if busy is not None and use.server_cores is not None:
            use.machine_cores = busy
            use.other_cores = max(0.0, busy - use.server_cores - use.client_cores)
        return use


def arrival_lengths(result: PhaseResult, pool_lengths: list[int]) -> list[int]:
    """The length of each measured request's sequence, in the order the requests were sent."""
    order = np.argsort(result.sent, kind="stable")
    return [pool_lengths[int(k)] for k in result.pool_index[order]]


def measured_phase(
    generator: LoadGenerator, server: RunningServer, phase: Phase, model: str
) -> tuple[dict[str, Any], PhaseResult, CpuUse]:
    """``phase`` against ``server``: loadtest's summary (the server's ``/metrics`` figures in
    it), the client's raw result, and the CPU used over the measured part."""
    cpu = PhaseCpu(server)
    summary, result = measure_phase(generator, phase, model, on_measure_start=cpu.start)
    return summary, result, cpu.finish(summary["elapsed_s"], result.client_cpu_s)


def load_server(
    server: RunningServer, plan: LoadPlan, features: int, model_file: Path | None
) -> list[Point]:
    """Every protocol at every concurrency against ``server``; sampled answers of each protocol
    checked against ``model_file`` in-process (shapes only for the HTTP ceiling, whose answers
    are not predictions)."""
    points: list[Point] = []
    info = fetch_model_info(server.url, plan.model)
    for protocol in plan.protocols:
        spec = plan.pool_spec(protocol, features)
        pool_lengths = [len(request[0]) for request in pool_sequences(spec)]
        config = ClientConfig(server.url, spec, timeout_s=60.0, samples_per_phase=plan.verify)
        protocol_points: list[Point] = []
        with LoadGenerator(config, plan.processes) as generator:
            samples = []
            if plan.server_warmup_s > 0 and protocol == plan.protocols[0]:
                # A fresh server's first seconds are slower (allocations for new shapes):
                # keep them out of its first point.
                generator.run(Phase("closed", concurrency=16, duration_s=plan.server_warmup_s))
            for concurrency in plan.concurrency:
                phase = Phase(
                    "closed", concurrency=concurrency, duration_s=plan.seconds,
                    warmup_s=plan.warmup_s,
                )  # fmt: skip
                summary, result, cpu = measured_phase(generator, server, phase, plan.model)
                point = Point(
                    kind=server.kind,
                    protocol=protocol,
                    client=summary,
                    cpu=cpu,
                    arrival_lengths=arrival_lengths(result, pool_lengths),
                )
                samples.extend(result.samples)
                protocol_points.append(point)
                log.info(point_line(point))
        check_file = model_file if server.kind != "http-ceiling" else None
        verification = verify_samples(samples, spec, info, check_file)
        for point in protocol_points:
            point.verification = Verification(
                checked_responses=verification["checked_responses"],
                passed=verification["passed"],
                max_abs_error_vs_ort=verification["max_abs_error_vs_ort"],
                failures=verification["failures"],
            )
        if not verification["passed"]:
            log.info("  VERIFICATION FAILED for %s %s: %s", server.kind, protocol, verification)
        points += protocol_points
    return points


def point_line(point: Point) -> str:
    """One line of progress for a point."""
    lat, server = point.latency_ms, point.server
    batch = server.get("mean_batch_size")
    extra = f"  batch {batch:.1f} pad {server['padding_efficiency']:.3f}" if batch else ""
    return (
        f"  {point.kind:<12} {point.protocol:<9} c={point.concurrency:<3} "
        f"{point.sequences_per_s:8.1f} seq/s  p50 {lat['p50'] or 0:7.2f} ms  "
        f"p99 {lat['p99'] or 0:7.2f} ms  failed {point.client['failed']}{extra}"
    )


class RejectionProbe:
    """While running (``with``), sends ``request`` to ``url`` every ``every_s`` and notes each
    rejection's status and ``Retry-After`` header in ``rejections``."""

    def __init__(self, url: str, request: EncodedRequest, every_s: float = 0.2) -> None:
        self._url, self._request, self._every_s = url + request.path, request, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rejection-probe", daemon=True)
        self.rejections: list[tuple[int, str | None]] = []

    def __enter__(self) -> RejectionProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(70)

    def _run(self) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(
                self._url, self._request.body, dict(self._request.headers)
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
            except urllib.error.HTTPError as error:
                self.rejections.append((error.code, error.headers.get("Retry-After")))
            except OSError:
                pass
            self._stop.wait(self._every_s)
