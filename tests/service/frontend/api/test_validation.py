"""Bad input through the ASGI app (``service.frontend.api.validation``, and
``service.frontend.api.v2_codec`` for what only V2 bodies carry): every malformed, oversized or
unknown request is a 4xx whose error names the problem, with a stable ``error_type``."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.support.tiny_repository import FEATURES
from tests.support.v2_bodies import tensor

pytestmark = pytest.mark.anyio


def _v2(shape: list[int], data: list, datatype: str = "FP32", **extra: object) -> dict:
    return {"inputs": [tensor("inputs", shape, datatype, data)], **extra}


def _binary(declared: int, sent: int) -> tuple[bytes, str]:
    """A binary V2 body for one [1, 1, 5] FP32 input: ``declared`` bytes said, ``sent`` sent."""
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "inputs",
                    "shape": [1, 1, FEATURES],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": declared},
                }
            ]
        }
    )
    return header + b"\0" * sent, str(len(header))


GOOD_STEP = [0.1] * FEATURES

BAD_REQUESTS = [
    # (url, body bytes or JSON, headers, status, words the error must contain)
    ("/v1/models/tiny_bi/predict", {"sequences": [[[1.0, 2.0]]]}, None, 422, "5 features"),
    ("/v1/models/tiny_bi/predict", {"sequences": []}, None, 422, "no sequences"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[]]}, None, 422, "empty"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[GOOD_STEP, [1.0]]]}, None, 422, "ragged"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[["x"] * 5]]}, None, 422, "non-numeric"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[[True] * 5]]}, None, 422, "booleans"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[[1e39] * 5]]}, None, 422, "infinite"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[GOOD_STEP] * 301]}, None, 422, "limit is 300"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[GOOD_STEP]] * 257}, None, 422, "limit is 256"),
    ("/v1/models/tiny_bi/predict", {"sequence": []}, None, 422, "sequences"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[GOOD_STEP]], "bogus": 1}, None, 422, "bogus"),
    (
        "/v1/models/tiny_bi/predict",
        {"sequences": [[GOOD_STEP]], "return": ["x"]},
        None,
        422,
        "return",
    ),
    ("/v1/models/tiny_bi/predict", b'{"sequences": [[[1,2', None, 400, "not valid JSON"),
    ("/v1/models/tiny_bi/predict", b"[" * 5000 + b"]" * 5000, None, 400, "not valid JSON"),
    ("/v1/models/nope/predict", {"sequences": [[GOOD_STEP]]}, None, 404, "nope"),
    ("/v1/models/tiny_bi/versions/9/predict", {"sequences": [[GOOD_STEP]]}, None, 404, "version"),
    (
        "/v1/models/tiny_uni/predict",
        {"sequences": [[GOOD_STEP]], "initial_states": [[{"c": [[0.0]], "h": [[0.0]]}] * 2]},
        None,
        422,
        "shape",
    ),
    ("/v2/models/tiny_bi/infer", _v2([1, 2, 5], [0.0] * 9), None, 422, "needs 10"),
    ("/v2/models/tiny_bi/infer", _v2([1, 2, 4], [0.0] * 8), None, 422, "[B, T, 5]"),
    ("/v2/models/tiny_bi/infer", _v2([1, 1, 5], ["a"] * 5, "BYTES"), None, 422, "datatype"),
    ("/v2/models/tiny_bi/infer", _v2([1, 1, 5], [1] * 5, "INT32"), None, 422, "FP32"),
    ("/v2/models/tiny_bi/infer", _v2([1, 0, 5], []), None, 422, "zero-length"),
    ("/v2/models/tiny_bi/infer", {"inputs": []}, None, 422, "inputs"),
    (
        "/v2/models/tiny_bi/infer",
        {
            "inputs": [
                {"name": "inputs", "shape": [2, 2, 5], "datatype": "FP32", "data": [0.0] * 20},
                {"name": "lengths", "shape": [2], "datatype": "INT32", "data": [0, 2]},
            ]
        },
        None,
        422,
        "zero-length",
    ),
    (
        "/v2/models/tiny_bi/infer",
        {
            "inputs": [
                {"name": "inputs", "shape": [1, 2, 5], "datatype": "FP32", "data": [0.0] * 10},
                {"name": "lengths", "shape": [1], "datatype": "INT32", "data": [3]},
            ]
        },
        None,
        422,
        "[1, 2]",
    ),
    (
        "/v2/models/tiny_bi/infer",
        _v2([1, 1, 5], [0.0] * 5, outputs=[{"name": "zz"}]),
        None,
        422,
        "zz",
    ),
    (
        "/v2/models/tiny_bi/infer",
        {"inputs": [{"name": "extra", "shape": [1], "datatype": "FP32", "data": [0.0]}]},
        None,
        422,
        "unknown inputs",
    ),
    ("/v2/models/tiny_bi/infer", *_binary(declared=20, sent=8), 400, "binary data ends"),
    ("/v2/models/tiny_bi/infer", *_binary(declared=16, sent=16), 400, "does not match"),
    ("/v2/models/tiny_bi/infer", *_binary(declared=20, sent=24), 400, "belong to no input"),
    ("/v2/models/tiny_bi/infer", b"{}", "999", 400, "Inference-Header-Content-Length"),
]


@pytest.mark.parametrize(("url", "body", "header_length", "status", "words"), BAD_REQUESTS)
async def test_bad_input_gets_a_clear_4xx(
    client: httpx.AsyncClient,
    url: str,
    body: object,
    header_length: str | None,
    status: int,
    words: str,
) -> None:
    headers = {"Inference-Header-Content-Length": header_length} if header_length else {}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await client.post(url, content=content, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert words in error["error"], error
    assert error["error_type"]
