"""Hostile input and access control, across the service through its ASGI app (the routes, the body
limits and budget of ``service.frontend.api.bodies``, ``service.frontend.auth``, the batcher's
dropping of work): every attack is a fast 4xx, nothing accepted is lost, and a client that leaves
has its queued work dropped."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.service_app import GatedRuntime, app_client, gated_factory, until
from tests.support.tiny_repository import FEATURES, tiny_settings

pytestmark = pytest.mark.anyio
STEP = [0.5] * FEATURES
KEY = "s3cret-key-for-tests"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/..%2F..%2Fetc%2Fpasswd/ready",
        "/v2/models/%2E%2E/infer",
        "/v1/models/tiny_bi%2F..%2Ftiny_uni/predict",
        "/v2/models/tiny_bi/versions/..%2F1/infer",
        "/v2/models/tiny_bi/versions/01/infer",
    ],
)
async def test_path_tricks_in_model_names_are_404(client: httpx.AsyncClient, path: str) -> None:
    method = client.get if path.endswith("ready") else client.post
    kwargs = {} if path.endswith("ready") else {"json": {"sequences": [[STEP]]}}
    response = await method(path, **kwargs)
    assert response.status_code == 404, response.text
    assert response.json()["error"]  # a route or model that does not exist, never a file


async def test_chunked_body_over_the_limit_is_cut_off(model_repository: Path) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"sequences": ['
        for _ in range(10_000):  # 10 MB unless the server stops reading
            sent += 1
            yield b"[[0.1, 0.1, 0.1, 0.1, 0.1]]," * 40 + b" " * 24

    async with app_client(tiny_settings(model_repository, max_body_bytes=4096)) as http:
        response = await http.post("/v1/models/tiny_bi/predict", content=endless())
        assert response.status_code == 413
        assert "4096" in response.json()["error"]


async def test_a_million_tiny_sequences_are_refused_by_count(client: httpx.AsyncClient) -> None:
    body = b'{"sequences": [' + b",".join([b"[[0,0,0,0,0]]"] * 1_000_000) + b"]}"
    response = await client.post("/v1/models/tiny_bi/predict", content=body)
    assert response.status_code == 422
    assert "1000000 sequences" in response.json()["error"]


async def test_deeply_nested_json_is_400(client: httpx.AsyncClient) -> None:
    body = b'{"sequences": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await client.post("/v1/models/tiny_bi/predict", content=body)
    assert response.status_code == 400


async def test_binary_header_claiming_huge_tensor_is_refused_without_allocating(
    client: httpx.AsyncClient,
) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "inputs",
                    "shape": [100_000, 100_000, FEATURES],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 4 * FEATURES * 10**10},
                }
            ]
        }
    )
    response = await client.post(
        "/v2/models/tiny_bi/infer",
        content=header + b"\0" * 64,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 422
    assert "elements" in response.json()["error"]


async def test_wrong_types_in_v2_header_are_4xx(client: httpx.AsyncClient) -> None:
    for inputs in (
        "nope",
        [{"name": 3}],
        [{"name": "inputs", "shape": "1,2", "datatype": "FP32", "data": [0]}],
        [{"name": "inputs", "shape": [1, -1, 5], "datatype": "FP32", "data": [0]}],
        [{"name": "inputs", "shape": [1, 1, 5], "datatype": "FP32", "parameters": "x"}],
        [{"name": "inputs", "shape": [1, 1, 5], "datatype": "FP32",
          "parameters": {"binary_data_size": "20"}}],
    ):  # fmt: skip
        response = await client.post("/v2/models/tiny_bi/infer", json={"inputs": inputs})
        assert 400 <= response.status_code < 500, (inputs, response.text)


async def test_api_key_guards_inference_and_metadata_not_health(model_repository: Path) -> None:
    settings = tiny_settings(model_repository, api_key=KEY)
    async with app_client(settings) as http:
        body = {"sequences": [[STEP]]}
        for path in ("/v1/models", "/v2/models/tiny_bi"):
            denied = await http.get(path)
            assert denied.status_code == 401
            assert denied.headers["WWW-Authenticate"] == "Bearer"
            assert KEY not in denied.text
        assert (await http.post("/v1/models/tiny_bi/predict", json=body)).status_code == 401
        wrong = {"Authorization": "Bearer " + KEY[:-1] + "X"}
        assert (
            await http.post("/v1/models/tiny_bi/predict", json=body, headers=wrong)
        ).status_code == 401
        right = {"Authorization": f"Bearer {KEY}"}
        assert (
            await http.post("/v1/models/tiny_bi/predict", json=body, headers=right)
        ).status_code == 200
        assert (await http.get("/v2/health/ready")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200


async def test_api_key_can_guard_health_and_metrics_too(model_repository: Path) -> None:
    settings = tiny_settings(
        model_repository, api_key=KEY, api_key_protects_health=True, api_key_protects_metrics=True
    )
    async with app_client(settings) as http:
        assert (await http.get("/v2/health/ready")).status_code == 401
        assert (await http.get("/metrics")).status_code == 401
        right = {"Authorization": f"Bearer {KEY}"}
        assert (await http.get("/metrics", headers=right)).status_code == 200


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    """``(method, path template, operation)`` of every operation in an OpenAPI ``schema``."""
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post")
    ]


@pytest.mark.parametrize("protect", [False, True])
async def test_the_schema_requires_the_key_exactly_where_the_middleware_does(
    model_repository: Path, protect: bool
) -> None:
    """Each operation of /openapi.json, requested without the key: refused (401) if and only if
    the schema says it needs the bearer key; so Swagger UI's "Authorize" covers what it must."""
    settings = tiny_settings(
        model_repository,
        api_key=KEY,
        api_key_protects_health=protect,
        api_key_protects_metrics=protect,
    )
    async with app_client(settings) as http:
        schema = (await http.get("/openapi.json")).json()
        assert schema["components"]["securitySchemes"] == {
            "bearer": {"type": "http", "scheme": "bearer"}
        }
        secured: dict[tuple[str, str], bool] = {}
        for method, path, operation in _operations(schema):
            url = path.replace("{name}", "tiny_bi").replace("{version}", "1")
            refused = (await http.request(method, url, json={})).status_code == 401
            secured[(method, path)] = "security" in operation
            assert secured[(method, path)] == refused, (method, path)
            if secured[(method, path)]:
                assert operation["security"] == [{"bearer": []}], (method, path)
    assert secured[("get", "/v1/models")] and secured[("post", "/v2/models/{name}/infer")]
    assert secured[("get", "/v2/health/ready")] is protect
    assert secured[("get", "/metrics")] is protect
    assert not {"/docs", "/redoc", "/openapi.json"} & set(schema["paths"])  # pages, not operations


async def test_without_a_key_the_schema_declares_no_security(model_repository: Path) -> None:
    async with app_client(tiny_settings(model_repository)) as http:
        schema = (await http.get("/openapi.json")).json()
    assert "securitySchemes" not in schema["components"]
    assert not [path for _, path, operation in _operations(schema) if "security" in operation]


def test_the_key_never_appears_in_settings_output() -> None:
    settings = tiny_settings(Path("."), api_key=KEY)
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())


async def test_a_client_that_disconnects_has_its_queued_work_dropped(
    model_repository: Path,
) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    settings = tiny_settings(model_repository, concurrent_batches=1, warmup=False)
    async with app_client(settings, gated_factory(gate, made)) as http:
        app = http._transport.app  # type: ignore[attr-defined]
        runtime = next(r for r in made if r.spec.name == "tiny_bi")
        batcher = app.state.context.registry.get("tiny_bi").batcher
        url = "/v1/models/tiny_bi/predict"
        holding = asyncio.ensure_future(http.post(url, json={"sequences": [[STEP]]}))
        assert await asyncio.to_thread(runtime.started.acquire, True, 10)

        leave = asyncio.Event()
        body = orjson.dumps({"sequences": [[STEP] * 7]})  # length 7 marks this request
        delivered = False

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await leave.wait()
            return {"type": "http.disconnect"}

        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": url, "raw_path": url.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"content-type", b"application/json")],
            "client": ("127.0.0.1", 50000), "server": ("test", 80), "state": {},
        }  # fmt: skip
        leaving = asyncio.ensure_future(app(scope, receive, send))
        await until(lambda: batcher.queue_depth == 1, "the request's queueing")
        leave.set()  # the client goes while its sequence waits
        await asyncio.wait_for(leaving, 10)
        gate.set()
        assert (await holding).status_code == 200
        after = await http.post(url, json={"sequences": [[STEP] * 3]})
        assert after.status_code == 200
        assert runtime.batches == [[1], [3]]  # the length-7 sequence never ran


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        (
            [{"name": "inputs", "shape": [0, 2**63 - 1, 2**63 - 1], "datatype": "FP32",
              "data": []}],
            "over the limit",
        ),
        ([{"name": "inputs", "shape": [1] * 65, "datatype": "FP32", "data": [1.0]}], "dimensions"),
    ],
)  # fmt: skip
async def test_shapes_numpy_cannot_build_are_422(
    client: httpx.AsyncClient, inputs: list, words: str
) -> None:
    response = await client.post("/v2/models/tiny_bi/infer", json={"inputs": inputs})
    assert response.status_code == 422, response.text
    assert words in response.json()["error"]


async def test_an_empty_outputs_list_is_422(client: httpx.AsyncClient) -> None:
    body = {
        "inputs": [{"name": "inputs", "shape": [1, 1, FEATURES], "datatype": "FP32",
                    "data": STEP}],
        "outputs": [],
    }  # fmt: skip
    response = await client.post("/v2/models/tiny_bi/infer", json=body)
    assert response.status_code == 422
    assert "non-empty" in response.json()["error"]


async def test_non_ascii_digits_in_the_header_length_are_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v2/models/tiny_bi/infer",
        content=b"{}",
        headers={"Inference-Header-Content-Length": "\u00b2".encode("latin-1")},
    )
    assert response.status_code == 400


async def test_unknown_model_names_do_not_grow_the_metrics(client: httpx.AsyncClient) -> None:
    for k in range(5):
        response = await client.post(f"/v2/models/random{k}/infer", json={"inputs": []})
        assert response.status_code == 404
    text = (await client.get("/metrics")).text
    assert "random" not in text
    assert 'lstm_requests_total{model="_unknown",protocol="v2",status="404"} 5.0' in text


def test_an_empty_api_key_means_no_key() -> None:
    assert tiny_settings(Path("."), api_key="  ").api_key is None


async def test_a_body_slower_than_the_deadline_gets_504(model_repository: Path) -> None:
    never = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"sequences": ['
        await never.wait()  # the rest never comes
        yield b"]}"

    settings = tiny_settings(model_repository, request_timeout_s=0.2)
    async with app_client(settings) as http:
        response = await http.post("/v1/models/tiny_bi/predict", content=trickle())
        assert response.status_code == 504
        assert "body did not arrive" in response.json()["error"]


def _predict_body(size: int) -> bytes:
    """A valid v1 body of exactly ``size`` bytes (one short sequence, padded with spaces)."""
    body = orjson.dumps({"sequences": [[STEP] * 3]})
    assert len(body) <= size
    return body + b" " * (size - len(body))


async def test_bytes_of_bodies_held_at_once_are_bounded(model_repository: Path) -> None:
    """While one upload holds 4,000 bytes of a 6,000-byte budget, a body that would not fit
    gets 429 with Retry-After before it is read, one that fits is served, and once the first
    is decoded its bytes are free again."""
    settings = tiny_settings(model_repository, max_body_bytes=4096, max_buffered_body_bytes=6000)
    held = _predict_body(4000)
    first_part_sent, finish = asyncio.Event(), asyncio.Event()

    async def slow_upload() -> AsyncIterator[bytes]:
        yield held[:100]
        first_part_sent.set()
        await finish.wait()
        yield held[100:]

    url = "/v1/models/tiny_bi/predict"
    async with app_client(settings) as http:
        upload = asyncio.ensure_future(
            http.post(url, content=slow_upload(), headers={"content-length": str(len(held))})
        )
        await first_part_sent.wait()
        refused = await http.post(url, content=_predict_body(3000))
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "1"
        assert "6000" in refused.json()["error"]
        fits = await http.post(url, content=_predict_body(1500))
        assert fits.status_code == 200, fits.text
        finish.set()
        assert (await upload).status_code == 200
        again = await http.post(url, content=_predict_body(3000))
        assert again.status_code == 200, again.text


def test_the_body_budget_must_hold_the_largest_body(model_repository: Path) -> None:
    with pytest.raises(ValueError, match="max_buffered_body_bytes"):
        tiny_settings(model_repository, max_body_bytes=8192, max_buffered_body_bytes=4096)
