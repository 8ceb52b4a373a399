"""``bench.http_ceiling``: the null runtime answers with the model's shapes, and is batched as
the service would batch the real session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.http_ceiling import NullRuntime, null_runtime_factory
from service.settings import Settings


def test_null_runtime_answers_with_the_model_shapes(
    tiny_model: Path, cpu_settings: Settings
) -> None:
    runtime = null_runtime_factory(tiny_model, "tiny_bi", "1", cpu_settings)
    assert isinstance(runtime, NullRuntime) and runtime.spec.input_size == 5
    sequences = [np.zeros((n, 5), np.float32) for n in (3, 7)]
    results = runtime.run_batch(sequences, [None, None], runtime.spec.output_names)
    assert len(results) == 2
    assert results[1]["probs"].shape == (3,)  # tiny_bi's 3 classes
    assert results[1]["probs"].sum() == pytest.approx(1.0)
    assert results[1]["outputs"].shape == (7, 16)  # two directions of 8
    assert results[0]["final_h_1"].shape == (2, 8)
    assert set(runtime.run_batch(sequences[:1], [None], {"logits"})[0]) == {"logits"}


def test_the_null_runtime_is_on_the_device_of_the_session_it_replaces(
    tiny_model: Path, cpu_settings: Settings
) -> None:
    runtime = null_runtime_factory(tiny_model, "tiny_bi", "1", cpu_settings)
    assert runtime.on_gpu is False  # the CPU provider: the service's CPU batching policy
    spec = runtime.spec
    assert NullRuntime(spec, on_gpu=True).on_gpu and not NullRuntime(spec).on_gpu
