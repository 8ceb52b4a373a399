"""Prometheus metrics, on a registry owned by the app (so several apps in one process, as in the
tests, never share counters). With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set
before start), every worker writes its values there and ``/metrics`` sums them.

A worker that dies without cleaning up (``kill -9``, the OOM killer) leaves its files behind.
Its counters must stay (they are totals), but its ``live*`` gauges (queue depth, readiness)
must go, or a dead worker's last queue depth is summed forever: the supervisor forgets each
worker it reaps (``forget_process``), and ``/metrics`` also forgets any process that no longer
runs, for deaths no supervisor reported (another process manager, a directory reused after a
crash).
"""

from __future__ import annotations

import contextlib
import os
import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from service.engine.batching.batcher import BatchStats

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)


class ServiceMetrics:
    """Every metric the service exports at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lstm_requests",
            "Inference requests by model, protocol and HTTP status.",
            ["model", "protocol", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "lstm_request_latency_seconds",
            "Time from a request's arrival to its response, by model and protocol.",
            ["model", "protocol"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sequences = Counter(
            "lstm_sequences", "Sequences accepted for inference.", ["model"], registry=r
        )
        self.queue_wait = Histogram(
            "lstm_queue_wait_seconds",
            "Time a sequence waited in the batcher before its batch started.",
            ["model", "device"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "lstm_batch_compute_seconds",
            "Time of one batch in the runtime: padding, ORT run and splitting.",
            ["model", "device"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "lstm_batch_size",
            "Sequences per batch.",
            ["model", "device"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.padding_efficiency = Histogram(
            "lstm_batch_padding_efficiency",
            "Real steps / padded steps of each batch.",
            ["model", "device"],
            buckets=_RATIO_BUCKETS,
            registry=r,
        )
        self.real_steps = Counter(
            "lstm_batch_real_steps", "Real (unpadded) steps run.", ["model", "device"], registry=r
        )
        self.padded_steps = Counter(
            "lstm_batch_padded_steps",
            "Steps run including padding.",
            ["model", "device"],
            registry=r,
        )
        self.batches = Counter(
            "lstm_batches",
            "Batches run, by outcome.",
            ["model", "device", "outcome"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "lstm_queue_depth",
            "Sequences waiting in the batcher.",
            ["model", "device"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.streams_live = Gauge(
            "lstm_streams_live",
            "Streams (V2 sequence_id) whose state the engine holds.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.stream_events = Counter(
            "lstm_stream_events",
            "Streams started, restarted, ended (sequence_end) and expired (idle).",
            ["event"],
            registry=r,
        )
        self.model_info = Gauge(
            "lstm_model_info",
            "1 for each loaded model version, labelled with the provider its session runs on "
            "and the device (cuda:N or cpu).",
            ["model", "version", "provider", "device"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_ready = Gauge(
            "lstm_model_ready",
            "1 if the model version can serve, else 0.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livemin",
        )

    def render(self) -> bytes:
        """The exposition text: this process's registry, or every live worker's values summed."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            forget_dead_processes(directory)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)
            return generate_latest(registry)
        return generate_latest(self.registry)

    def stream_event(self, event: str, live: int) -> None:
        """A stream started, restarted, ended or expired (``service.engine.streams``)."""
        self.stream_events.labels(event).inc()
        self.streams_live.set(live)

    def observer(self, model: str, version: str, device: str) -> BatchMetricsObserver:
        return BatchMetricsObserver(self, model, version, device)


_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def forget_process(pid: int, directory: str | None = None) -> None:
    """Drop the ``live*`` gauge files of a process that has exited (prometheus_client's
    ``mark_process_dead``, safe when several workers do it at once)."""
    directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            match = _LIVE_GAUGE_FILE.fullmatch(name)
            if match and int(match[1]) == pid:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(directory, name))


def forget_dead_processes(directory: str) -> list[int]:
    """Forget every process with ``live*`` gauge files that no longer runs; their pids."""
    pids = {
        int(match[1])
        for match in map(_LIVE_GAUGE_FILE.fullmatch, os.listdir(directory))
        if match is not None
    }
    dead = sorted(pid for pid in pids if not process_running(pid))
    for pid in dead:
        forget_process(pid, directory)
    return dead


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (an exited, unreaped zombie has)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; keep its gauges rather than erase those of a live process
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read()
    except OSError:
        return True  # no /proc (macOS): existence is all we can tell
    state = fields[fields.rindex(b")") + 2 : fields.rindex(b")") + 3]
    return state not in (b"Z", b"X")


class BatchMetricsObserver:
    """Feeds one model's batcher figures into the metrics, labelled with the model and the
    device its batches run on (``cuda:N`` or ``cpu``): summed by model they are the model's,
    summed by device the device's."""

    def __init__(self, metrics: ServiceMetrics, model: str, version: str, device: str) -> None:
        self._m = metrics
        self._version = version
        self._labels = (model, device)
        self._wait = metrics.queue_wait.labels(model, device)
        self._depth = metrics.queue_depth.labels(model, device)
        self._compute = metrics.compute.labels(model, device)
        self._size = metrics.batch_size.labels(model, device)
        self._padding = metrics.padding_efficiency.labels(model, device)
        self._real = metrics.real_steps.labels(model, device)
        self._padded = metrics.padded_steps.labels(model, device)

    def batch_done(self, stats: BatchStats) -> None:
        for wait in stats.queue_wait_s:
            self._wait.observe(wait)
        self._compute.observe(stats.compute_s)
        self._size.observe(stats.size)
        self._padding.observe(stats.real_steps / max(1, stats.padded_steps))
        self._real.inc(stats.real_steps)
        self._padded.inc(stats.padded_steps)
        self._m.batches.labels(*self._labels, "failed" if stats.failed else "ok").inc()

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def batcher_failed(self) -> None:
        self._m.model_ready.labels(self._labels[0], self._version).set(0)
