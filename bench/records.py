"""The typed records of a benchmark run, and their JSON form: the files in ``bench/results/``.

Who makes them: ``bench.load`` the ``Point`` of each server, protocol and concurrency;
``bench.ceiling`` the in-process ``Ceilings``; ``bench.handoff`` the ``HandoffCost``;
``bench.frontends`` the ``FrontendsCase`` and its ``FrontendRow`` of each process model;
``bench.streams`` the ``StreamsCase`` and its ``StreamModeRow`` of each way to hold the state;
``bench.analysis`` the rows derived from them (``PaddingRow``, ``RatioRow``, ``TimeBreakdown``,
``Target``) and the soak's ``SoakPhase``; ``bench.cli`` and ``bench.soak`` the whole
``SuiteReport`` and ``SoakReport``. ``bench.report`` writes them as markdown, and ``to_json`` as
JSON: fields in their order, nested records and numpy values made plain; a record with a
``to_json`` method of its own (columns flattened, figures left out when unknown) writes itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np

from bench.servers import ServerKind


def to_json(value: Any) -> Any:
    """``value`` as plain JSON values: records, dicts, lists, tuples and numpy values."""
    own = getattr(value, "to_json", None)
    if callable(own):
        return own()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


# -- the suite (python -m bench) ---------------------------------------------------------------
@dataclass
class CpuUse:
    """Cores used on average over a measured phase (CPU seconds per wall second), None where
    unknown: by the server process, by the load client, by the whole machine, and by everything
    else (``machine - server - client``; more than ~0.1 means the machine was not quiet)."""

    server_cores: float | None = None
    client_cores: float | None = None
    machine_cores: float | None = None
    other_cores: float | None = None


@dataclass
class Verification:
    """Sampled answers of one server and protocol checked by ``loadtest.verify``."""

    checked_responses: int
    passed: bool
    max_abs_error_vs_ort: float | None
    failures: list[str]


@dataclass
class Point:
    """One server under closed-loop load: one protocol at one concurrency.

    ``client`` is loadtest's summary of the measured phase (``loadtest.report.measure_phase``):
    counts, ``requests_per_s``, ``sequences_per_s``, ``latency_ms``, ``elapsed_s``,
    ``client_cpu_s``, ``concurrency``, and the server's ``/metrics`` figures as ``server`` when it
    has them. ``arrival_lengths``: the length of each request's sequence in the order the
    requests were sent, for the padding comparison (not written out).
    """

    kind: ServerKind
    protocol: str
    client: dict[str, Any]
    cpu: CpuUse = field(default_factory=CpuUse)
    arrival_lengths: list[int] = field(default_factory=list, repr=False)
    verification: Verification | None = None

    @property
    def concurrency(self) -> int:
        return int(self.client["concurrency"])

    @property
    def sequences_per_s(self) -> float:
        return float(self.client["sequences_per_s"])

    @property
    def latency_ms(self) -> dict[str, float | None]:
        latency: dict[str, float | None] = self.client["latency_ms"]
        return latency

    @property
    def server(self) -> dict[str, Any]:
        """The server's figures over the phase; empty when it has no ``/metrics``."""
        return self.client.get("server") or {}

    def to_json(self) -> dict[str, Any]:
        cpu = {
            "server_cpu_cores": self.cpu.server_cores,
            "client_cpu_cores": self.cpu.client_cores,
            "machine_cpu_cores": self.cpu.machine_cores,
            "other_cpu_cores": self.cpu.other_cores,
        }
        return {
            **self.client,
            **{name: value for name, value in cpu.items() if value is not None},
            "server": self.client.get("server"),
            "protocol": self.protocol,
            "kind": self.kind,
            "verification": to_json(self.verification),
        }


@dataclass
class CeilingRow:
    """One way of cutting the ceiling sample into batches, and the sequences/s of each runner
    on them (``ort_{P}x1``, ``ort_1x{cores}``, ``torch_eager_{P}x1``: see ``bench.ceiling``).
    ``batch`` is a batch size, or ``batcher (<mean batch>)`` for the service's policy."""

    batch: int | str
    order: str
    padding_efficiency: float
    seq_per_s: dict[str, float] = field(default_factory=dict)

    @property
    def best_ort_seq_per_s(self) -> float:
        return max(v for k, v in self.seq_per_s.items() if k.startswith("ort_"))

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "order": self.order,
            "padding_efficiency": self.padding_efficiency,
            **{f"{runner}_seq_per_s": rate for runner, rate in self.seq_per_s.items()},
        }


@dataclass
class CeilingSample:
    sequences: int
    lengths: str
    features: int


@dataclass
class CeilingCell:
    batch: int | str
    order: str


@dataclass
class SingleSequence:
    """One sequence per run, one run at a time: milliseconds per run."""

    median_ms: float
    mean_ms: float
    runs: int


@dataclass
class Ceilings:
    """The in-process compute ceiling (``bench.ceiling.measure_ceilings``).

    ``ort_at_batcher_batches``: the best ORT sequences/s on the batches the service's policy
    cuts, by ``"<n> waiting"``; ``other_cpu_cores``: what other processes used meanwhile."""

    ort_at_batcher_batches: dict[str, float]
    other_cpu_cores: float | None
    sample: CeilingSample
    cores: int
    parallel_runs: int
    rows: list[CeilingRow]
    ort_best_seq_per_s: float
    ort_best_at: CeilingCell
    single_sequence: SingleSequence


@dataclass
class PaddingRow:
    """The batcher's padding efficiency at one service point vs first-come batches of the same
    arrival stream, at the batcher's mean batch size and at 64."""

    protocol: str
    concurrency: int
    mean_batch_size: float
    batcher_padding_efficiency: float
    fcfs_same_batch_size: float
    fcfs_batch_64: float


@dataclass
class RatioRow:
    """A service point's sequences/s over the others'; None (and not written) where the other
    figure was not measured."""

    # Alike in shape only to service.registry.ServedModel: fields, then the optional ones.
    protocol: str
    concurrency: int
    service_seq_per_s: float
    vs_naive: float | None = None
    vs_http_ceiling: float | None = None
    vs_ort_ceiling: float | None = None
    vs_ort_at_batcher_batches: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass
class TimeBreakdown:
    """Where a service point's time goes, mean milliseconds per request: outside the server
    (client, TCP, uvicorn's HTTP parsing) and in it: queue wait, batch compute, and the rest
    (body read, decoding, validation, result assembly, encoding, event-loop scheduling)."""

    protocol: str
    concurrency: int
    client_latency_ms: float
    outside_server_ms: float
    in_server_ms: float
    queue_wait_ms: float
    batch_compute_ms: float
    rest_in_server_ms: float
    server_cpu_ms_per_request: float | None
    client_cpu_ms_per_request: float
    compute_busy: float | None


@dataclass
class Target:
    target: str
    value: float
    met: bool


@dataclass
class Machine:
    name: str
    cpu_model: str
    cores: int
    platform: str
    python: str
    onnxruntime: str


@dataclass
class ServerStart:
    startup_s: float
    label: str


@dataclass
class HandoffCost:
    """What the hand-off (``service.handoff``: frontend to engine and back over ZeroMQ IPC)
    costs per request, measured in one process (``bench.handoff``) with inference skipped: the
    same ``requests`` sent through a ``RemoteBatcher`` to an ``EngineServer`` and straight to
    the ``DynamicBatcher``, ``in_flight`` at a time, each one sequence ``(length, features)``.

    CPU is ``time.process_time`` (every thread: the event loop, the executor, ZeroMQ's I/O
    thread), microseconds per request; ``handoff_cpu_us`` = remote - direct, both sides of the
    hand-off together."""

    model: str
    requests: int
    in_flight: int
    length: int
    features: int
    direct_cpu_us: float
    remote_cpu_us: float
    handoff_cpu_us: float
    direct_wall_us: float
    remote_wall_us: float


@dataclass
class FrontendRow:
    """One process model of the service under one load (``bench.frontends``): ``frontends``
    HTTP processes and the models in one engine process (``engine="separate"``) or in each
    worker (``"in-process"``; one worker: everything in one process); closed loop at
    ``concurrency`` clients or open loop at ``offered_rate`` requests/s. ``client`` is
    loadtest's summary, with the server's ``/metrics`` figures (summed over its processes) as
    ``server``; ``cpu.server_cores`` counts every process of the server.
    ``batch_vs_one_process``: this row's mean batch size over the one-process row's at the same
    offered rate (``bench.analysis.frontend_batch_ratios``)."""

    label: str
    frontends: int
    engine: str
    mode: str
    concurrency: int | None
    offered_rate: float | None
    client: dict[str, Any]
    cpu: CpuUse = field(default_factory=CpuUse)
    batch_vs_one_process: float | None = None

    @property
    def requests_per_s(self) -> float:
        return float(self.client["requests_per_s"])

    @property
    def latency_ms(self) -> dict[str, float | None]:
        latency: dict[str, float | None] = self.client["latency_ms"]
        return latency

    @property
    def server(self) -> dict[str, Any]:
        """The server's figures over the phase; empty when it has no ``/metrics``."""
        return self.client.get("server") or {}

    @property
    def mean_batch_size(self) -> float | None:
        size = self.server.get("mean_batch_size")
        return float(size) if size is not None else None


@dataclass
class FrontendsCase:
    """The multi-frontend case of ``python -m bench`` (``--frontends``): every row over
    ``protocol``, the closed-loop rows at ``concurrency`` clients and the open-loop rows all at
    ``offered_rate`` requests/s (``rate_source`` says where that rate came from)."""

    protocol: str
    concurrency: int
    offered_rate: float
    rate_source: str
    rows: list[FrontendRow]


@dataclass
class StreamModeRow:
    """One way of serving the streaming case's streams (``bench.streams``): ``mode`` is
    ``server-state``, ``client-state`` or ``resend-history`` (``loadtest.streams.MODES``).
    Throughput counts answered chunks and their new steps only; latency is per chunk; bytes
    are the mean request body per chunk. ``max_diff_vs_server_state``: the largest absolute
    difference of a finished stream's last ``probs`` from the server-state row's, over the
    streams both finished (None for that row, or when none is common)."""

    mode: str
    chunks_ok: int
    chunks_failed: int
    chunks_per_s: float
    steps_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    request_bytes_per_chunk: float | None
    streams_finished: int
    streams_live_max: float | None
    max_diff_vs_server_state: float | None = None


@dataclass
class StreamsCase:
    """The streaming case of ``python -m bench`` (``--streams S``): the same streams (``S``
    concurrent, ``chunks_per_stream`` chunks of ``chunk_steps`` steps, ``think_ms`` between a
    stream's chunks, ``seconds`` per mode) served three ways by one server, over ``protocol``."""

    model: str
    protocol: str
    streams: int
    chunk_steps: int
    chunks_per_stream: int
    think_ms: float
    seconds: float
    rows: list[StreamModeRow]


@dataclass
class SuiteReport:
    """Everything ``python -m bench`` measured: ``bench/results/{cpu,gpu}-<date>.json``."""

    date: str
    command: str
    machine: Machine
    provider: str
    model: str
    model_file: str
    lengths: str
    seconds: float
    warmup_s: float
    client_processes: int
    servers: dict[str, ServerStart]
    ceilings: Ceilings | None
    points: list[Point]
    ratios: list[RatioRow]
    padding: list[PaddingRow]
    breakdown: list[TimeBreakdown]
    targets: list[Target]
    load_average_at_start: tuple[float, float, float] | None
    load_average_at_end: tuple[float, float, float] | None
    wall_s: float
    handoff: HandoffCost | None = None
    frontends: FrontendsCase | None = None
    streams: StreamsCase | None = None
    precisions: PrecisionCase | None = None


@dataclass
class PrecisionRow:
    """One precision variant of the benchmark's model (``bench.precision``): its test accuracy
    (from its metadata), its in-process sequences/s per ``"<batch> <order>"`` cell, and the
    service's sequences/s and p99 at ``concurrency`` clients serving it."""

    precision: str
    model: str
    provider: str
    test_accuracy: float | None
    in_process_seq_per_s: dict[str, float]
    service_seq_per_s: float | None
    service_p99_ms: float | None


@dataclass
class PrecisionCase:
    """The precision case of ``python -m bench`` (``--precisions``): every variant over the
    same sample and the same load; ``naive_fp32_seq_per_s`` is the naive baseline serving fp32
    at the same concurrency and protocol, when the run measured it."""

    protocol: str
    concurrency: int
    parallel_runs: int
    rows: list[PrecisionRow]
    naive_fp32_seq_per_s: float | None = None


# -- the overload soak (python -m bench.soak) ----------------------------------------------------
@dataclass
class Recovery:
    """``recovered_after_s``: seconds into the recovery phase from which every 1-s bin is good
    (None if none is); ``good_bins``: each bin's verdict."""

    recovered_after_s: int | None
    good_bins: list[bool]


@dataclass
class SoakPhase:
    """One open-loop phase of the soak, as the client saw it. Status -1: dropped by the client
    (too many in flight), 0: no response."""

    offered_rate: float
    seconds: float
    arrivals: int
    achieved_send_rate: float
    by_status: dict[int, int]
    accepted: int
    rejected_429_503: int
    server_errors_5xx_not_503: int
    no_response: int
    transport_errors: dict[str, int]
    dropped_by_client: int
    accepted_per_s: float
    p50_accepted_ms: float | None
    p99_accepted_ms: float | None
    max_accepted_ms: float | None
    p99_within_deadline: bool
    recovery: Recovery | None = None
    """The recovery phase only."""

    def to_json(self) -> dict[str, Any]:
        figures = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "recovery"}
        return {**figures, **(to_json(self.recovery) if self.recovery else {})}


@dataclass
class ProbeRejections:
    """What a side probe saw during the overload: rejections, and whether all had Retry-After."""

    count: int
    statuses: list[int]
    all_have_retry_after: bool


@dataclass
class SoakReport:
    """Everything ``python -m bench.soak`` measured: ``bench/results/soak-<date>.json``."""

    command: str
    date: str
    provider: str
    service_flags: str
    request_deadline_s: float
    capacity_req_per_s: float
    phases: dict[str, SoakPhase]
    rejections_seen_by_probe: ProbeRejections
    accepted_answers_checked: int
    accepted_answers_wrong: int
    max_abs_error_vs_ort: float
    rss_mib: dict[str, float | None]
    server_exit_code: int | None
