"""``loadtest.payloads``: routes, deterministic pre-encoded pools, the binary body's layout; the
three encoders produce bodies the real app accepts, and the decoders read its answers back to
the reference probabilities (``tests/bench`` posts the same pools to the bench's baseline and
HTTP-ceiling apps)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from loadtest.payloads import (
    HEADER_LENGTH,
    PROTOCOLS,
    DecodeError,
    build_pool,
    decode_response,
    encode,
    pool_sequences,
    route,
)
from loadtest.verify import OrtReference, parse_model_metadata, verify_samples
from tests.support.pools import pool_spec, post_pool
from tests.support.tiny_repository import FEATURES, LABELS, MODEL

pytestmark = pytest.mark.anyio


def test_routes() -> None:
    assert route("v1", "m") == "/v1/models/m/predict"
    assert route("v2-json", "m", "3") == "/v2/models/m/versions/3/infer"
    with pytest.raises(ValueError):
        route("grpc", "m")


def test_pool_is_deterministic_and_pre_encoded() -> None:
    first, again = build_pool(pool_spec("v2-binary")), build_pool(pool_spec("v2-binary"))
    assert [r.body for r in first] == [r.body for r in again]
    assert len(first) == 4 and all(1 <= r.sequences <= 3 for r in first)
    for request, sequences in zip(first, pool_sequences(pool_spec("v2-binary")), strict=True):
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


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_service_accepts_each_encoding_and_answers_the_reference(
    protocol: str, service_client: httpx.AsyncClient, model_file: Path
) -> None:
    reference = OrtReference(model_file)
    answers = await post_pool(service_client, protocol)
    for (_, body, header_length), sequences in zip(
        answers, pool_sequences(pool_spec(protocol)), strict=True
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
    report = verify_samples(samples, pool_spec(protocol), info, model_file)
    assert report["passed"] and report["ort_sequences_checked"] >= len(answers)


def test_decode_errors() -> None:
    with pytest.raises(DecodeError):
        decode_response("v1", b'{"results": 3}', None)
    header = orjson.dumps({"outputs": [{"name": "probs", "datatype": "FP32", "shape": [1, 3],
                                        "parameters": {"binary_data_size": 12}}]})  # fmt: skip
    with pytest.raises(DecodeError, match="shorter"):
        decode_response("v2-binary", header + b"\0" * 8, str(len(header)))
    with pytest.raises(DecodeError, match="no 'probs'"):
        decode_response("v2-json", b'{"outputs": []}', None)
