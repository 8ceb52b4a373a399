"""The bench's pure parts: batching the ceiling sample, padding efficiency, FCFS simulation,
and the HTTP ceiling's null runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.ceiling import batcher_batches, cut, pad, padding_efficiency, sample_sequences
from bench.http_ceiling import NullRuntime, null_runtime_factory
from bench.run import fcfs_padding_efficiency, time_breakdown
from tests.loadtest.conftest import FEATURES, LABELS, MODEL, settings


def test_fcfs_padding_efficiency_on_known_lengths() -> None:
    assert fcfs_padding_efficiency([10, 10, 10, 10], 2) == 1.0
    # batches [10, 30] and [20, 20]: real 80, padded 60 + 40
    assert fcfs_padding_efficiency([10, 30, 20, 20], 2) == pytest.approx(0.8)
    assert fcfs_padding_efficiency([5, 15, 10], 64) == pytest.approx(30 / 45)
    assert fcfs_padding_efficiency([7, 3], 1) == 1.0


def test_cut_sorted_batches_pad_less_than_arrival_order() -> None:
    sequences = sample_sequences(256, 3, 10, 200, seed=1)
    arrival, ordered = cut(sequences, 16, "arrival"), cut(sequences, 16, "sorted")
    assert sum(len(n) for _, n in arrival) == sum(len(n) for _, n in ordered) == 256
    assert padding_efficiency(ordered) > 0.9 > 0.7 > padding_efficiency(arrival)
    inputs, lengths = pad([np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)])
    assert inputs.shape == (2, 4, 3) and lengths.tolist() == [2, 4] and inputs[0, 2:].sum() == 0
    with pytest.raises(ValueError):
        cut(sequences, 4, "random")


def test_null_runtime_answers_with_the_model_shapes(repository: Path) -> None:
    runtime = null_runtime_factory(
        repository / MODEL / "1" / "model.onnx", MODEL, "1", settings(repository)
    )
    assert isinstance(runtime, NullRuntime) and runtime.spec.input_size == FEATURES
    sequences = [np.zeros((n, FEATURES), np.float32) for n in (3, 7)]
    results = runtime.run_batch(sequences, [None, None], runtime.spec.output_names)
    assert len(results) == 2
    assert results[1]["probs"].shape == (len(LABELS),)
    assert results[1]["probs"].sum() == pytest.approx(1.0)
    assert results[1]["outputs"].shape == (7, 16)  # two directions of 8
    assert results[0]["final_h_1"].shape == (2, 8)
    assert set(runtime.run_batch(sequences[:1], [None], {"logits"})[0]) == {"logits"}


def test_time_breakdown_splits_the_request_latency() -> None:
    point = {
        "latency_ms": {"mean": 10.0},
        "ok": 100,
        "elapsed_s": 1.0,
        "client_cpu_s": 0.02,
        "server_cpu_cores": 0.5,
        "server": {
            "request_latency_ms": {"mean": 8.0},
            "queue_wait_ms": {"mean": 3.0},
            "batch_compute_ms": {"mean": 4.0},
            "compute_busy": 0.4,
        },
    }
    b = time_breakdown(point)
    assert b is not None
    assert b["outside_server_ms"] == pytest.approx(2.0)
    assert b["rest_in_server_ms"] == pytest.approx(1.0)
    assert b["server_cpu_ms_per_request"] == pytest.approx(5.0)
    assert b["client_cpu_ms_per_request"] == pytest.approx(0.2)
    assert time_breakdown({"latency_ms": {"mean": 1.0}, "server": None}) is None


def test_batcher_batches_use_every_sequence_once_within_the_policy() -> None:
    sequences = sample_sequences(300, 2, 10, 200, seed=4)
    batches = batcher_batches(sequences, waiting=32)
    assert sum(len(n) for _, n in batches) == 300
    assert sorted(int(v) for _, n in batches for v in n) == sorted(len(s) for s in sequences)
    for inputs, lengths in batches:
        assert len(lengths) <= 64
        if len(lengths) > 1:
            assert lengths.sum() >= 0.85 * inputs.shape[0] * inputs.shape[1]
    assert padding_efficiency(batches) > padding_efficiency(cut(sequences, 8, "arrival"))
