from __future__ import annotations

import httpx
import numpy as np
import pytest

from loadtest.distributions import parse_int_distribution
from loadtest.payloads import PoolSpec, build_pool
from loadtest.prom import (
    MetricsSnapshot,
    delta,
    histogram,
    histogram_quantile,
    parse_metrics,
    server_figures,
)
from tests.support.tiny_repository import FEATURES, MODEL

pytestmark = pytest.mark.anyio

TEXT = """\
# HELP lstm_requests_total Inference requests.
# TYPE lstm_requests_total counter
lstm_requests_total{model="m",protocol="v2",status="200"} 10.0
lstm_requests_total{model="m",protocol="v1",status="429"} 2.0
lstm_requests_created{model="m",protocol="v2",status="200"} 1.7e9
# TYPE lstm_queue_depth gauge
lstm_queue_depth{model="m"} 3.0
# TYPE lstm_batch_size histogram
lstm_batch_size_bucket{le="1.0",model="m"} 2.0
lstm_batch_size_bucket{le="4.0",model="m"} 4.0
lstm_batch_size_bucket{le="+Inf",model="m"} 4.0
lstm_batch_size_count{model="m"} 4.0
lstm_batch_size_sum{model="m"} 8.0
weird{path="a \\"quoted\\", value",other="x\\\\y"} -Inf
"""


def test_parse_reads_samples_labels_and_types() -> None:
    snap = parse_metrics(TEXT)
    assert snap.types["lstm_requests_total"] == "counter"
    assert snap.types["lstm_queue_depth"] == "gauge"
    assert snap.total("lstm_requests_total", model="m") == 12.0
    assert snap.total("lstm_requests_total", model="m", status="200") == 10.0
    assert not any(name.endswith("_created") for name, _ in snap.samples)
    ((labels, value),) = snap.select("weird")
    assert labels == {"path": 'a "quoted", value', "other": "x\\y"} and value == -np.inf
    assert snap.select("lstm_batch_size_bucket", le="+Inf")[0][1] == 4.0


def test_unparsable_lines_are_reported() -> None:
    with pytest.raises(ValueError, match="cannot parse"):
        parse_metrics("this is not a metric line at all {")


def test_delta_subtracts_counters_and_histograms_and_keeps_gauges() -> None:
    before = parse_metrics(TEXT)
    after = parse_metrics(
        TEXT.replace('status="200"} 10.0', 'status="200"} 25.0')
        .replace('lstm_queue_depth{model="m"} 3.0', 'lstm_queue_depth{model="m"} 1.0')
        .replace('le="4.0",model="m"} 4.0', 'le="4.0",model="m"} 9.0')
        .replace('le="+Inf",model="m"} 4.0', 'le="+Inf",model="m"} 9.0')
        .replace('lstm_batch_size_count{model="m"} 4.0', 'lstm_batch_size_count{model="m"} 9.0')
        .replace('lstm_batch_size_sum{model="m"} 8.0', 'lstm_batch_size_sum{model="m"} 23.0')
    )
    changed = delta(before, after)
    assert changed.total("lstm_requests_total", status="200") == 15.0
    assert changed.total("lstm_requests_total", status="429") == 0.0
    assert changed.total("lstm_queue_depth") == 1.0  # a gauge: its value after the run
    summary = histogram(changed, "lstm_batch_size", model="m")
    assert summary is not None
    assert summary["count"] == 5 and summary["mean"] == pytest.approx(3.0)


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = [(1.0, 10.0), (2.0, 30.0), (4.0, 40.0), (float("inf"), 40.0)]
    assert histogram_quantile(0.25, buckets) == pytest.approx(1.0)
    assert histogram_quantile(0.5, buckets) == pytest.approx(1.5)
    assert histogram_quantile(0.875, buckets) == pytest.approx(3.0)
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.4)
    over = [(1.0, 1.0), (float("inf"), 10.0)]
    assert histogram_quantile(0.99, over) == 1.0  # beyond the last finite bound
    assert histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None


def test_server_figures_from_a_delta() -> None:
    snap = MetricsSnapshot(types={"lstm_batch_size": "histogram"})
    s = snap.samples
    s[("lstm_batch_size_count", (("model", "m"),))] = 4.0
    s[("lstm_batch_size_sum", (("model", "m"),))] = 10.0
    s[("lstm_batch_size_bucket", (("le", "4.0"), ("model", "m")))] = 4.0
    s[("lstm_batch_real_steps_total", (("model", "m"),))] = 900.0
    s[("lstm_batch_padded_steps_total", (("model", "m"),))] = 1000.0
    s[("lstm_batch_compute_seconds_count", (("model", "m"),))] = 4.0
    s[("lstm_batch_compute_seconds_sum", (("model", "m"),))] = 0.5
    s[("lstm_requests_total", (("model", "m"), ("protocol", "v2"), ("status", "200")))] = 10.0
    s[("lstm_requests_total", (("model", "other"), ("protocol", "v2"), ("status", "200")))] = 5.0
    figures = server_figures(snap, "m", elapsed_s=2.0)
    assert figures["batches"] == 4 and figures["mean_batch_size"] == pytest.approx(2.5)
    assert figures["padding_efficiency"] == pytest.approx(0.9)
    assert figures["batch_compute_ms"]["mean"] == pytest.approx(125.0)
    assert figures["compute_busy"] == pytest.approx(0.25)
    assert figures["requests"] == {"v2:200": 10}
    assert figures["queue_wait_ms"] is None


async def test_the_service_metrics_parse_and_their_delta_counts_one_run(
    service_client: httpx.AsyncClient,
) -> None:
    spec = PoolSpec("v2-binary", MODEL, FEATURES, parse_int_distribution("4:9"),
                    parse_int_distribution("2"), 6, seed=3)  # fmt: skip
    before = parse_metrics((await service_client.get("/metrics")).text)
    for request in build_pool(spec):
        response = await service_client.post(
            request.path, content=request.body, headers=request.headers
        )
        assert response.status_code == 200
    after = parse_metrics((await service_client.get("/metrics")).text)
    figures = server_figures(delta(before, after), MODEL, elapsed_s=1.0)
    assert figures["requests"] == {"v2:200": 6}
    assert figures["sequences"] == 12
    assert figures["batches"] >= 6  # requests were sent one by one
    assert 0 < figures["padding_efficiency"] <= 1
    assert figures["queue_wait_ms"]["count"] == 12
