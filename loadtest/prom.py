"""The server's own figures: ``/metrics`` (Prometheus text format) read before and after a run.

Counters and histograms only grow, so what a run did is ``after - before`` (``delta``); gauges
keep their value after the run. ``server_figures`` turns a delta into the numbers a report needs:
mean batch size, padding efficiency (real / padded steps), queue wait and batch compute time
(mean, and quantiles estimated from the histogram buckets as Prometheus' ``histogram_quantile``
does), the server-side request latency and the requests by status.
"""

from __future__ import annotations

import math
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

Labels = tuple[tuple[str, str], ...]
SampleKey = tuple[str, Labels]

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?\s*$"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _parse_labels(text: str) -> Labels:
    labels, position = [], 0
    while position < len(text):
        match = _LABEL.match(text, position)
        if match is None:
            if text[position:].strip(" ,"):
                raise ValueError(f"cannot parse labels {{{text}}}")
            break
        labels.append((match.group(1), _unescape(match.group(2))))
        position = match.end()
    return tuple(sorted(labels))


@dataclass
class MetricsSnapshot:
    """Samples by ``(name, sorted labels)``, and each family's declared type."""

    samples: dict[SampleKey, float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    def family(self, sample_name: str) -> str:
        for suffix in _SUFFIXES:
            if sample_name.endswith(suffix):
                base = sample_name[: -len(suffix)]
                if base in self.types:
                    return base
        return sample_name

    def select(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Every sample called ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return [
            (dict(key_labels), value)
            for (sample, key_labels), value in self.samples.items()
            if sample == name and wanted <= set(key_labels)
        ]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the matching samples (0 when there are none)."""
        return sum(value for _, value in self.select(name, **labels))


def parse_metrics(text: str) -> MetricsSnapshot:
    """Parse the Prometheus text exposition format (``_created`` samples are left out)."""
    snapshot = MetricsSnapshot()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                snapshot.types[parts[2]] = parts[3]
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"cannot parse metrics line {line!r}")
        name = match.group("name")
        if name.endswith("_created"):
            continue
        labels = _parse_labels(match.group("labels") or "")
        snapshot.samples[(name, labels)] = float(match.group("value"))
    return snapshot


def delta(before: MetricsSnapshot, after: MetricsSnapshot) -> MetricsSnapshot:
    """What happened between two snapshots: counters and histograms subtract, gauges stay."""
    changed = MetricsSnapshot(types=dict(after.types))
    for key, value in after.samples.items():
        if after.types.get(after.family(key[0])) == "gauge":
            changed.samples[key] = value
        else:
            changed.samples[key] = value - before.samples.get(key, 0.0)
    return changed


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Estimate quantile ``q`` (0..1) from cumulative ``(upper bound, count)`` buckets.

    Linear interpolation inside the bucket that holds the rank, with 0 as the lowest bound;
    a rank in the ``+Inf`` bucket returns the highest finite bound. None without observations.
    """
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower_bound
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = upper, count
    return buckets[-1][0]


def histogram(snapshot: MetricsSnapshot, name: str, **labels: str) -> dict[str, Any] | None:
    """``count``, ``sum``, ``mean`` and estimated p50/p90/p99 of histogram ``name``, summed
    over series that match ``labels``; None when it has no observations."""
    count = snapshot.total(f"{name}_count", **labels)
    if count <= 0:
        return None
    by_bound: dict[float, float] = {}
    for sample_labels, value in snapshot.select(f"{name}_bucket", **labels):
        bound = float(sample_labels["le"])
        by_bound[bound] = by_bound.get(bound, 0.0) + value
    total = snapshot.total(f"{name}_sum", **labels)
    buckets = list(by_bound.items())
    return {
        "count": count,
        "sum": total,
        "mean": total / count,
        "p50": histogram_quantile(0.5, buckets),
        "p90": histogram_quantile(0.9, buckets),
        "p99": histogram_quantile(0.99, buckets),
    }


def _ms(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    out = {"count": int(summary["count"])}
    out.update(
        {k: summary[k] * 1000.0 for k in ("mean", "p50", "p90", "p99") if summary[k] is not None}
    )
    return out


def server_figures(changed: MetricsSnapshot, model: str, elapsed_s: float) -> dict[str, Any]:
    """The service's figures for ``model`` over a run, from the delta of two snapshots.

    Times are in milliseconds. ``compute_busy`` is batch compute seconds per wall second: the
    mean number of batches running at once (the service runs up to ``concurrent_batches``).
    """
    requests: dict[str, int] = {}
    for labels, value in changed.select("lstm_requests_total", model=model):
        if value:
            key = f"{labels.get('protocol')}:{labels.get('status')}"
            requests[key] = int(value)
    batch = histogram(changed, "lstm_batch_size", model=model)
    real = changed.total("lstm_batch_real_steps_total", model=model)
    padded = changed.total("lstm_batch_padded_steps_total", model=model)
    compute = histogram(changed, "lstm_batch_compute_seconds", model=model)
    figures: dict[str, Any] = {
        "requests": requests,
        "sequences": int(changed.total("lstm_sequences_total", model=model)),
        "batches": int(batch["count"]) if batch else 0,
        "failed_batches": int(changed.total("lstm_batches_total", model=model, outcome="failed")),
        "mean_batch_size": batch["mean"] if batch else None,
        "batch_size_p50": batch["p50"] if batch else None,
        "padding_efficiency": real / padded if padded > 0 else None,
        "real_steps": int(real),
        "padded_steps": int(padded),
        "request_latency_ms": _ms(histogram(changed, "lstm_request_latency_seconds", model=model)),
        "queue_wait_ms": _ms(histogram(changed, "lstm_queue_wait_seconds", model=model)),
        "batch_compute_ms": _ms(compute),
        "compute_busy": compute["sum"] / elapsed_s if compute and elapsed_s > 0 else None,
    }
    depth = changed.select("lstm_queue_depth", model=model)
    if depth:
        figures["queue_depth_at_end"] = int(depth[0][1])
    return figures


def fetch_metrics(
    url: str, timeout_s: float = 10.0, headers: dict[str, str] | None = None
) -> MetricsSnapshot | None:
    """``GET {url}/metrics`` parsed, or None when the server has no metrics endpoint."""
    request = urllib.request.Request(url.rstrip("/") + "/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return parse_metrics(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError):
        return None
