"""Prometheus metrics, on a registry owned by the app (so several apps in one process, as in the
tests, never share counters). With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set
before start), every worker writes its values there and ``/metrics`` sums them."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from service.batching.batcher import BatchStats

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
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "lstm_batch_compute_seconds",
            "Time of one batch in the runtime: padding, ORT run and splitting.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "lstm_batch_size", "Sequences per batch.", ["model"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.padding_efficiency = Histogram(
            "lstm_batch_padding_efficiency",
            "Real steps / padded steps of each batch.",
            ["model"],
            buckets=_RATIO_BUCKETS,
            registry=r,
        )
        self.real_steps = Counter(
            "lstm_batch_real_steps", "Real (unpadded) steps run.", ["model"], registry=r
        )
        self.padded_steps = Counter(
            "lstm_batch_padded_steps", "Steps run including padding.", ["model"], registry=r
        )
        self.batches = Counter(
            "lstm_batches", "Batches run, by outcome.", ["model", "outcome"], registry=r
        )
        self.queue_depth = Gauge(
            "lstm_queue_depth",
            "Sequences waiting in the batcher.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.model_info = Gauge(
            "lstm_model_info",
            "1 for each loaded model version, labelled with the provider its session runs on.",
            ["model", "version", "provider"],
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
        """The exposition text: this process's registry, or every worker's values summed."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    def observer(self, model: str, version: str) -> BatchMetricsObserver:
        return BatchMetricsObserver(self, model, version)


class BatchMetricsObserver:
    """Feeds one model's batcher figures into the metrics."""

    def __init__(self, metrics: ServiceMetrics, model: str, version: str) -> None:
        self._m = metrics
        self._model = model
        self._version = version
        self._wait = metrics.queue_wait.labels(model)
        self._depth = metrics.queue_depth.labels(model)

    def batch_done(self, stats: BatchStats) -> None:
        m, model = self._m, self._model
        for wait in stats.queue_wait_s:
            self._wait.observe(wait)
        m.compute.labels(model).observe(stats.compute_s)
        m.batch_size.labels(model).observe(stats.size)
        m.padding_efficiency.labels(model).observe(stats.real_steps / max(1, stats.padded_steps))
        m.real_steps.labels(model).inc(stats.real_steps)
        m.padded_steps.labels(model).inc(stats.padded_steps)
        m.batches.labels(model, "failed" if stats.failed else "ok").inc()

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def batcher_failed(self) -> None:
        self._m.model_ready.labels(self._model, self._version).set(0)
