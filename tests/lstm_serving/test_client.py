"""``lstm_serving.client`` against a real server: V2 binary (the default) and v1 give the
classes and probabilities in-process ORT gives, sync and async, streams equal the whole
sequence, and the server's errors arrive as ``ServerError`` with its status and message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_serving.client import AsyncClient, Client, ServerError
from service.frontend.app import create_app
from tests.support.ort_reference import Reference
from tests.support.servers import ROOT, Server
from tests.support.tiny_repository import FEATURES, LABELS, tiny_settings

pytestmark = pytest.mark.slow
RNG = np.random.default_rng(3)
SEQUENCES = [RNG.normal(size=(n, FEATURES)).astype(np.float32) for n in (9, 2, 14)]


def expected(reference: Reference, model: str) -> np.ndarray:
    return np.stack([reference.run(model, s)["probs"] for s in SEQUENCES])


@pytest.mark.parametrize("protocol", ["v2", "v1"])
@pytest.mark.parametrize("model", ["tiny_bi", "tiny_uni"])
def test_predict_gives_the_reference_classes(
    server: Server, reference: Reference, model: str, protocol: str
) -> None:
    with Client(server.url, protocol=protocol) as client:  # type: ignore[arg-type]
        result = client.predict(model, SEQUENCES)
    probs = expected(reference, model)
    np.testing.assert_allclose(result.probabilities, probs, atol=1e-5)
    assert result.labels == [LABELS[i] for i in probs.argmax(axis=1)]
    assert result.class_index.tolist() == probs.argmax(axis=1).tolist()
    assert (result.model, result.version, result.class_names) == (model, "1", list(LABELS))


def test_one_sequence_as_a_list_of_steps(server: Server, reference: Reference) -> None:
    with Client(server.url) as client:
        result = client.predict("tiny_bi", SEQUENCES[0].tolist())
    assert len(result.labels) == 1
    np.testing.assert_allclose(
        result.probabilities[0], expected(reference, "tiny_bi")[0], atol=1e-5
    )


def test_examples_are_read_back(server: Server, examples_repository: Path) -> None:
    with Client(server.url) as client:
        examples = client.examples("tiny_bi")
        result = client.predict("tiny_bi", [np.array(e["sequence"]) for e in examples])
        assert client.ready() and {m["name"] for m in client.models()} == {"tiny_bi", "tiny_uni"}
    assert result.labels == [e["label"] for e in examples]


def test_a_stream_equals_the_whole_sequence(server: Server, reference: Reference) -> None:
    whole = SEQUENCES[2]
    with Client(server.url) as client:
        stream = client.stream("tiny_uni", sequence_id="client-test")
        stream.send(whole[:5])
        stream.send(whole[5:6])
        last = stream.send(whole[6:], end=True)
        with pytest.raises(ServerError) as ended:  # the stream is gone once ended
            client.predict("tiny_uni", whole[:1], sequence_id="client-test")
    np.testing.assert_allclose(
        last.probabilities[0], reference.run("tiny_uni", whole)["probs"], atol=1e-5
    )
    assert ended.value.status == 404 and ended.value.error_type == "stream_not_found"


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_server_errors_carry_its_status_and_message(server: Server, protocol: str) -> None:
    with Client(server.url, protocol=protocol) as client:  # type: ignore[arg-type]
        with pytest.raises(ServerError) as unknown:
            client.predict("nope", SEQUENCES)
        with pytest.raises(ServerError) as wrong:
            client.predict("tiny_bi", np.zeros((3, FEATURES + 1), np.float32))
    assert unknown.value.status == 404 and unknown.value.error_type == "model_not_found"
    assert "nope" in unknown.value.message
    assert wrong.value.status == 422 and wrong.value.error_type == "invalid_input"
    assert str(FEATURES) in wrong.value.message and "HTTP 422" in str(wrong.value)


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", ["v2", "v1"])
async def test_async_client_gives_the_same(
    server: Server, reference: Reference, protocol: str
) -> None:
    async with AsyncClient(server.url, protocol=protocol) as client:  # type: ignore[arg-type]
        result = await client.predict("tiny_bi", SEQUENCES)
        stream = client.stream("tiny_uni", sequence_id=7)
        await stream.send(SEQUENCES[0][:4])
        last = await stream.send(SEQUENCES[0][4:], end=True)
        with pytest.raises(ServerError) as unknown:
            await client.predict("nope", SEQUENCES)
    np.testing.assert_allclose(result.probabilities, expected(reference, "tiny_bi"), atol=1e-5)
    np.testing.assert_allclose(
        last.probabilities[0], reference.run("tiny_uni", SEQUENCES[0])["probs"], atol=1e-5
    )
    assert unknown.value.status == 404


@pytest.mark.anyio
async def test_the_api_key_is_sent_as_a_bearer_header(examples_repository: Path) -> None:
    import httpx

    app = create_app(tiny_settings(examples_repository, api_key="client-key"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://test", api_key="client-key", transport=transport) as ok:
            assert (await ok.predict("tiny_bi", SEQUENCES)).labels
        async with AsyncClient("http://test", api_key="wrong", transport=transport) as refused:
            with pytest.raises(ServerError) as error:
                await refused.predict("tiny_bi", SEQUENCES)
    assert error.value.status == 401 and error.value.error_type == "unauthorized"


def test_the_client_imports_neither_torch_nor_onnxruntime() -> None:
    probe = (
        "import sys, lstm_serving.client, lstm_serving.cli; "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'service', 'fastapi')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
