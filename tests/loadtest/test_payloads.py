"""The three encoders produce bodies the real app (and the bench's baseline and HTTP-ceiling
apps) accept, and the decoders read their answers back to the reference probabilities."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from bench.http_ceiling import null_runtime_factory
from bench.naive_server import create_naive_app
from loadtest.distributions import parse_int_distribution
from loadtest.payloads import (
    HEADER_LENGTH,
    PROTOCOLS,
    DecodeError,
    PoolSpec,
    build_pool,
    decode_response,
    encode,
    pool_sequences,
    route,
)
from loadtest.verify import OrtReference, parse_model_metadata, verify_samples
from service.app import create_app
from tests.loadtest.conftest import FEATURES, LABELS, MODEL, asgi_client, settings

pytestmark = pytest.mark.anyio


def spec(protocol: str, size: int = 4, sequences: str = "1:3") -> PoolSpec:
    return PoolSpec(protocol, MODEL, FEATURES, parse_int_distribution("2:40"),
                    parse_int_distribution(sequences), size, seed=11)  # fmt: skip


def test_routes() -> None:
    assert route("v1", "m") == "/v1/models/m/predict"
    assert route("v2-json", "m", "3") == "/v2/models/m/versions/3/infer"
    with pytest.raises(ValueError):
        route("grpc", "m")


def test_pool_is_deterministic_and_pre_encoded() -> None:
    first, again = build_pool(spec("v2-binary")), build_pool(spec("v2-binary"))
    assert [r.body for r in first] == [r.body for r in again]
    assert len(first) == 4 and all(1 <= r.sequences <= 3 for r in first)
    for request, sequences in zip(first, pool_sequences(spec("v2-binary")), strict=True):
        assert request.lengths == tuple(len(s) for s in sequences)
        assert all(2 <= n <= 40 for n in request.lengths)


def test_binary_body_layout() -> None:
    rng = np.random.default_rng(0)
    sequences = [rng.standard_normal((n, FEATURES), dtype=np.float32) for n in (3, 5)]
    body, headers = encode("v2-binary", sequences)
    split = int(headers[HEADER_LENGTH])
    header = orjson.loads(body[:split])
    assert [i["shape"] for i in header["inputs"]] == [[2, 5, FEATURES], [2]]
    tensor = np.frombuffer(body[split : split + 2 * 5 * FEATURES * 4], "<f4").reshape(2, 5, -1)
    np.testing.assert_array_equal(tensor[0, :3], sequences[0])
    assert not tensor[0, 3:].any()
    assert np.frombuffer(body[split + 2 * 5 * FEATURES * 4 :], "<i4").tolist() == [3, 5]


async def _post_pool(http: httpx.AsyncClient, protocol: str) -> list[tuple[int, bytes, str]]:
    answers = []
    for k, request in enumerate(build_pool(spec(protocol))):
        response = await http.post(request.path, content=request.body, headers=request.headers)
        assert response.status_code == 200, response.text
        answers.append((k, response.content, response.headers.get(HEADER_LENGTH)))
    return answers


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_service_accepts_each_encoding_and_answers_the_reference(
    protocol: str, service_client: httpx.AsyncClient, model_file: Path
) -> None:
    reference = OrtReference(model_file)
    answers = await _post_pool(service_client, protocol)
    for (_, body, header_length), sequences in zip(
        answers, pool_sequences(spec(protocol)), strict=True
    ):
        decoded = decode_response(protocol, body, header_length)
        assert decoded.probs.shape == (len(sequences), len(LABELS))
        assert (header_length is not None) == (protocol == "v2-binary")
        for b, sequence in enumerate(sequences):
            np.testing.assert_allclose(decoded.probs[b], reference.probs(sequence), atol=1e-5)
        if protocol == "v1":
            assert decoded.labels == [LABELS[i] for i in decoded.probs.argmax(axis=1)]
    metadata = (await service_client.get(f"/v2/models/{MODEL}")).json()
    info = parse_model_metadata(metadata)
    assert (info.features, info.classes, info.labels) == (FEATURES, len(LABELS), list(LABELS))
    samples = [(k, 200, body, hl) for k, body, hl in answers]
    report = verify_samples(samples, spec(protocol), info, model_file)
    assert report["passed"] and report["ort_sequences_checked"] >= len(answers)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_naive_baseline_accepts_the_same_bodies(
    protocol: str, repository: Path, model_file: Path
) -> None:
    async with asgi_client(create_naive_app(repository)) as http:
        answers = await _post_pool(http, protocol)
        info = parse_model_metadata((await http.get(f"/v2/models/{MODEL}")).json())
    samples = [(k, 200, body, hl) for k, body, hl in answers]
    report = verify_samples(samples, spec(protocol), info, model_file)
    assert report["passed"], report


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_http_ceiling_runs_the_real_path_without_inference(
    protocol: str, repository: Path
) -> None:
    app = create_app(settings(repository), runtime_factory=null_runtime_factory)
    async with asgi_client(app) as http:
        answers = await _post_pool(http, protocol)
        bad = build_pool(spec(protocol))[0]
        wrong = bad.body.replace(b'"shape":[', b'"shape":[7,') if protocol != "v1" else b"{}"
        refused = await http.post(bad.path, content=wrong, headers=bad.headers)
        models = (await http.get("/v1/models")).json()["models"]
    assert refused.status_code in (400, 422)  # still validated
    assert models[0]["provider"].startswith("none")
    for _, body, header_length in answers:
        probs = decode_response(protocol, body, header_length).probs
        np.testing.assert_allclose(probs, 1.0 / len(LABELS))


def test_verification_catches_wrong_answers(model_file: Path) -> None:
    protocol = "v2-json"
    sequences = pool_sequences(spec(protocol))[0]
    reference = OrtReference(model_file)
    good = np.stack([reference.probs(s) for s in sequences])

    def body(probs: np.ndarray) -> bytes:
        output = {"name": "probs", "datatype": "FP32", "shape": list(probs.shape),
                  "data": probs.ravel().tolist()}  # fmt: skip
        return orjson.dumps({"outputs": [output]})

    info = None
    ok = verify_samples([(0, 200, body(good), None)], spec(protocol), info, model_file)
    assert ok["passed"] and ok["max_abs_error_vs_ort"] <= 1e-6
    shifted = np.roll(good, 1, axis=1)
    wrong = verify_samples([(0, 200, body(shifted), None)], spec(protocol), info, model_file)
    assert not wrong["passed"] and "vs in-process ORT" in wrong["failures"][0]
    short = verify_samples([(0, 200, body(good[:, :2]), None)], spec(protocol), info, None)
    assert not short["passed"]
    garbage = verify_samples([(0, 200, b"not json", None)], spec(protocol), info, None)
    assert not garbage["passed"] and garbage["failure_count"] == 1
    assert not verify_samples([], spec(protocol), info, None)["passed"]  # nothing checked


def test_decode_errors() -> None:
    with pytest.raises(DecodeError):
        decode_response("v1", b'{"results": 3}', None)
    header = orjson.dumps({"outputs": [{"name": "probs", "datatype": "FP32", "shape": [1, 3],
                                        "parameters": {"binary_data_size": 12}}]})  # fmt: skip
    with pytest.raises(DecodeError, match="shorter"):
        decode_response("v2-binary", header + b"\0" * 8, str(len(header)))
    with pytest.raises(DecodeError, match="no 'probs'"):
        decode_response("v2-json", b'{"outputs": []}', None)
