"""Values on the wire are what they say they are, in both APIs (``service.frontend.api.validation``
and ``service.frontend.api.v2_codec``, through the ASGI app): integers are not wrapped, booleans are
not numbers, flags are booleans, datatypes are the ones the metadata gives, and NaN is not JSON."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from service.frontend.api.v2_codec import DATATYPES
from tests.support.tiny_repository import FEATURES
from tests.support.v2_bodies import tensor

pytestmark = pytest.mark.anyio
STEP = [0.5] * FEATURES
V1 = "/v1/models/tiny_bi/predict"
V2 = "/v2/models/tiny_bi/infer"


def batch_of_two(lengths: Any, datatype: str = "INT32", steps: int = 3) -> dict[str, Any]:
    return {
        "inputs": [
            tensor("inputs", [2, steps, FEATURES], "FP32", [0.5] * (2 * steps * FEATURES)),
            tensor("lengths", [2], datatype, lengths),
        ],
        "outputs": [{"name": "probs"}],
    }


def binary_body(inputs: list[tuple[str, np.ndarray, str]], **header: Any) -> tuple[bytes, dict]:
    entries, blobs = [], []
    for name, array, datatype in inputs:
        blob = array.tobytes()
        entries.append(
            {"name": name, "shape": list(array.shape), "datatype": datatype,
             "parameters": {"binary_data_size": len(blob)}}
        )  # fmt: skip
        blobs.append(blob)
    encoded = orjson.dumps({"inputs": entries, **header})
    return encoded + b"".join(blobs), {"Inference-Header-Content-Length": str(len(encoded))}


# -- 4. integers out of range are refused, never wrapped ------------------------------------------
@pytest.mark.parametrize("length", [4294967297, -4294967295, 2**31])
async def test_int32_lengths_out_of_range_are_422(client: httpx.AsyncClient, length: int) -> None:
    # 2**32 + 1 and -(2**32) + 1 used to wrap to length 1, and 2**31 to a negative one.
    response = await client.post(V2, json=batch_of_two([3, length]))
    assert response.status_code == 422, response.text
    assert "out of the INT32 range" in response.json()["error"]
    assert str(length) in response.json()["error"]


async def test_uint8_lengths_are_422_not_wrapped(client: httpx.AsyncClient) -> None:
    # UINT8 [257] used to be served as length 1; lengths are INT32, as the metadata says.
    response = await client.post(V2, json=batch_of_two([3, 257], "UINT8"))
    assert response.status_code == 422, response.text
    assert "accepts only INT32" in response.json()["error"]


# -- 5. booleans are not numbers -----------------------------------------------------------------
BOOLEANS_AMONG_NUMBERS = [
    (V1, {"sequences": [[[True, 0.5, 0.5, 0.5, 0.5]]]}),
    (V1, {"sequences": [[STEP, STEP], [STEP, [0.5, 0.5, False, 0.5, 0.5]]]}),
    (
        "/v1/models/tiny_uni/predict",
        {"sequences": [[STEP]], "initial_states": [[{"c": [[True] + [0.0] * 7], "h": [[0.0] * 8]},
                                                    {"c": [[0.0] * 12], "h": [[0.0] * 12]}]]},
    ),
    (V2, {"inputs": [tensor("inputs", [1, 1, FEATURES], "FP32", [True, 0.5, 0.5, 0.5, 0.5])]}),
    (V2, {"inputs": [tensor("inputs", [1, 1, FEATURES], "FP32", [[[0.5, 0.5, 0.5, 0.5, False]]])]}),
    # One boolean among many numbers (each 0/1 value is looked up, not every value):
    (V1, {"sequences": [[STEP] * 19 + [[0.5, 0.5, 0.5, True, 0.5]]]}),
    (V2, {"inputs": [tensor("inputs", [1, 20, FEATURES], "FP32", [0.5] * 99 + [False])]}),
    (V2, batch_of_two([True, 3])),
    (V2, batch_of_two([3, True])),
]  # fmt: skip


@pytest.mark.parametrize(("url", "body"), BOOLEANS_AMONG_NUMBERS)
async def test_booleans_mixed_with_numbers_are_422(
    client: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> None:
    response = await client.post(url, json=body)
    assert response.status_code == 422, response.text
    assert "booleans" in response.json()["error"]


async def test_zeros_and_ones_next_to_true_flags_are_numbers(client: httpx.AsyncClient) -> None:
    # The body holds ``true`` tokens (flags) and 0/1 numbers: only a real boolean is refused.
    steps = [[0.0, 1.0, 0, 1, 0.5]] * 2
    body = {
        "inputs": [tensor("inputs", [1, 2, FEATURES], "FP32", steps),
                   tensor("lengths", [1], "INT32", [1])],
        "outputs": [{"name": "probs", "parameters": {"binary_data": False}}],
        "parameters": {"binary_data_output": True},
    }  # fmt: skip
    response = await client.post(V2, json=body)
    assert response.status_code == 200, response.text
    response = await client.post(V1, json={"sequences": [steps], "return": ["label"]})
    assert response.status_code == 200, response.text


# -- 6. binary flags are booleans ----------------------------------------------------------------
def _one_step(**header: Any) -> dict[str, Any]:
    return {"inputs": [tensor("inputs", [1, 1, FEATURES], "FP32", STEP)], **header}


@pytest.mark.parametrize(
    ("parameters", "binary"),
    [(True, True), (False, False), ("true", True), ("false", False)],
)
async def test_binary_data_output_flags(
    client: httpx.AsyncClient, parameters: Any, binary: bool
) -> None:
    body = _one_step(parameters={"binary_data_output": parameters}, outputs=[{"name": "probs"}])
    response = await client.post(V2, json=body)
    assert response.status_code == 200, response.text
    assert ("inference-header-content-length" in response.headers) is binary
    body = _one_step(outputs=[{"name": "probs", "parameters": {"binary_data": parameters}}])
    response = await client.post(V2, json=body)
    assert response.status_code == 200, response.text
    assert ("inference-header-content-length" in response.headers) is binary


@pytest.mark.parametrize("flag", ["False", "no", "0", "", 1, 0, None, [], {"x": 1}])
async def test_binary_flags_that_are_not_booleans_are_422(
    client: httpx.AsyncClient, flag: Any
) -> None:
    response = await client.post(V2, json=_one_step(parameters={"binary_data_output": flag}))
    assert response.status_code == 422, response.text
    assert "binary_data_output must be true or false" in response.json()["error"]
    body = _one_step(outputs=[{"name": "probs", "parameters": {"binary_data": flag}}])
    response = await client.post(V2, json=body)
    assert response.status_code == 422, response.text
    assert "outputs[0].parameters.binary_data must be true or false" in response.json()["error"]


# -- 9. the datatypes the metadata gives, and only those ------------------------------------------
async def test_metadata_and_accepted_datatypes_agree(client: httpx.AsyncClient) -> None:
    advertised = {
        i["name"]: i["datatype"] for i in (await client.get("/v2/models/tiny_bi")).json()["inputs"]
    }
    assert advertised == {"inputs": "FP32", "lengths": "INT32"}
    batch = np.full((1, 2, FEATURES), 0.5)
    for inputs_type in DATATYPES:
        for lengths_type in DATATYPES:
            content, headers = binary_body(
                [("inputs", batch.astype(DATATYPES[inputs_type]), inputs_type),
                 ("lengths", np.array([2]).astype(DATATYPES[lengths_type]), lengths_type)],
                outputs=[{"name": "probs"}],
            )  # fmt: skip
            response = await client.post(V2, content=content, headers=headers)
            pair = (inputs_type, lengths_type)
            if pair == ("FP32", "INT32"):
                assert response.status_code == 200, response.text
                continue
            assert response.status_code == 422, (pair, response.text)
            error = response.json()["error"]
            refused = "inputs" if inputs_type != "FP32" else "lengths"
            assert f"input {refused!r} has datatype" in error, error
            assert f"accepts only {advertised[refused]}" in error, error


@pytest.mark.parametrize("datatype", ["FP16", "FP64"])
async def test_other_float_datatypes_in_json_are_422(
    client: httpx.AsyncClient, datatype: str
) -> None:
    # FP16 used to be accepted and to change the answer (its inputs rounded).
    body = _one_step()
    body["inputs"][0]["datatype"] = datatype
    response = await client.post(V2, json=body)
    assert response.status_code == 422, response.text
    assert "accepts only FP32" in response.json()["error"]


async def test_initial_states_in_another_datatype_are_422(client: httpx.AsyncClient) -> None:
    body = {
        "inputs": [
            tensor("inputs", [1, 1, FEATURES], "FP32", STEP),
            tensor("initial_h_0", [1, 1, 8], "FP64", [0.0] * 8),
        ]
    }
    response = await client.post("/v2/models/tiny_uni/infer", json=body)
    assert response.status_code == 422, response.text
    assert "'initial_h_0' has datatype 'FP64'" in response.json()["error"]


# -- NaN and Infinity are not JSON ---------------------------------------------------------------
@pytest.mark.parametrize("token", [b"NaN", b"-Infinity", b"Infinity", b"nan"])
@pytest.mark.parametrize("url", [V1, V2])
async def test_nan_in_json_is_400_saying_json_has_no_nan(
    client: httpx.AsyncClient, url: str, token: bytes
) -> None:
    if url == V1:
        body = b'{"sequences": [[[0.5, 0.5, ' + token + b", 0.5, 0.5]]]}"
    else:
        body = (
            b'{"inputs": [{"name": "inputs", "shape": [1, 1, 5], "datatype": "FP32", '
            b'"data": [0.5, ' + token + b", 0.5, 0.5, 0.5]}]}"
        )
    response = await client.post(url, content=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "NaN and Infinity are not JSON numbers" in error, error
    assert "reject" in error  # and says that non-finite input would not be accepted anyway
