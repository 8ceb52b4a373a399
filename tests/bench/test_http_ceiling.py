"""``bench.http_ceiling``: the null runtime answers with the model's shapes, and is batched as
the service would batch the real session; the service over it runs the real request path
(validation included) on the load tester's bodies, without inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.http_ceiling import NullRuntime, null_runtime_factory
from loadtest.payloads import PROTOCOLS, build_pool, decode_response
from service.frontend.app import create_app
from service.settings import Settings
from tests.support.asgi import asgi_client
from tests.support.pools import pool_spec, post_pool
from tests.support.tiny_repository import LABELS, tiny_settings


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


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_http_ceiling_runs_the_real_path_without_inference(
    protocol: str, model_repository: Path
) -> None:
    app = create_app(tiny_settings(model_repository), runtime_factory=null_runtime_factory)
    async with asgi_client(app) as http:
        answers = await post_pool(http, protocol)
        bad = build_pool(pool_spec(protocol))[0]
        wrong = bad.body.replace(b'"shape":[', b'"shape":[7,') if protocol != "v1" else b"{}"
        refused = await http.post(bad.path, content=wrong, headers=bad.headers)
        models = (await http.get("/v1/models")).json()["models"]
    assert refused.status_code in (400, 422)  # still validated
    assert models[0]["provider"].startswith("none")
    for _, body, header_length in answers:
        probs = decode_response(protocol, body, header_length).probs
        np.testing.assert_allclose(probs, 1.0 / len(LABELS))
