"""Open Inference Protocol (KServe V2) REST bodies, with the binary tensor data extension.

A binary request is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the
raw tensors, in input order, for each input whose ``parameters.binary_data_size`` is set
(row-major, little-endian). A response carries binary outputs the same way when asked
(``parameters.binary_data`` on an output, or ``binary_data_output`` on the request).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.api.common import decode_json
from service.api.validation import numeric_array
from service.errors import InvalidInput, MalformedRequest

HEADER_LENGTH = "inference-header-content-length"

DATATYPES: dict[str, np.dtype[Any]] = {
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
}


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None
    """None: every output, in JSON unless ``binary_output``."""
    binary_output: bool


MAX_RANK = 4  # inputs [B, T, F], lengths [B] or [B, 1], states [dirs, B, H]


def _shape(raw: Any, where: str, max_elements: int) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw
    ):
        raise InvalidInput(f"{where}.shape must be a list of non-negative integers")
    if len(raw) > MAX_RANK:
        raise InvalidInput(f"{where} has {len(raw)} dimensions; at most {MAX_RANK}")
    if any(d > max_elements for d in raw):
        # A zero elsewhere keeps the product small, but numpy still refuses such a shape.
        raise InvalidInput(f"{where} has a dimension over the limit of {max_elements} elements")
    return tuple(raw)


def _is_count(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '²', which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _parameters(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}.parameters must be an object")
    return raw


def parse_infer_request(body: bytes, header_length: str | None, max_elements: int) -> InferRequest:
    """Decode a V2 infer body (JSON, or JSON header + binary tensors) into named arrays."""
    if header_length is not None:
        if not _is_count(header_length) or int(header_length) > len(body):
            raise MalformedRequest(
                f"Inference-Header-Content-Length {header_length!r} does not fit a body of "
                f"{len(body)} bytes"
            )
        split = int(header_length)
        header, binary = decode_json(body[:split], "the inference header"), memoryview(body)[split:]
    else:
        header, binary = decode_json(body), memoryview(b"")
    if not isinstance(header, dict):
        raise InvalidInput("the inference request must be a JSON object")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for k, raw in enumerate(raw_inputs):
        where = f"inputs[{k}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InvalidInput(f"{where} must be an object with a 'name'")
        name = raw["name"]
        if name in inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        where = f"input {name!r}"
        shape = _shape(raw.get("shape"), where, max_elements)
        count = math.prod(shape)
        if count > max_elements:
            raise InvalidInput(f"{where} has {count} elements; the limit is {max_elements}")
        datatype = raw.get("datatype")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise InvalidInput(
                f"{where}.datatype {datatype!r} is not supported; use one of {sorted(DATATYPES)}"
            )
        dtype = DATATYPES[datatype]
        params = _parameters(raw.get("parameters"), where)
        if "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise MalformedRequest(f"{where}.binary_data_size must be a non-negative integer")
            if size != count * dtype.itemsize:
                raise MalformedRequest(
                    f"{where}: binary_data_size {size} does not match shape {list(shape)} of "
                    f"{datatype} ({count * dtype.itemsize} bytes)"
                )
            if offset + size > len(binary):
                raise MalformedRequest(
                    f"{where}: binary data ends after {len(binary) - offset} of {size} bytes"
                )
            array = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)
            offset += size
        else:
            if "data" not in raw:
                raise InvalidInput(f"{where} has neither 'data' nor parameters.binary_data_size")
            array = numeric_array(raw["data"], f"{where}.data")
            if array.size != count:
                raise InvalidInput(
                    f"{where}.data holds {array.size} values; shape {list(shape)} needs {count}"
                )
            if dtype.kind in "iu" and array.dtype.kind == "f":
                raise InvalidInput(f"{where} is {datatype} but its data holds non-integers")
            array = array.reshape(shape).astype(dtype.newbyteorder("="), copy=False)
        inputs[name] = array
    if offset != len(binary):
        raise MalformedRequest(f"{len(binary) - offset} bytes of binary data belong to no input")
    params = _parameters(header.get("parameters"), "the request")
    binary_output = bool(params.get("binary_data_output", False))
    outputs = None
    if "outputs" in header:
        raw_outputs = header["outputs"]
        if not isinstance(raw_outputs, list) or not raw_outputs:
            raise InvalidInput("'outputs' must be a non-empty list (leave it out for every output)")
        outputs = []
        for k, raw in enumerate(raw_outputs):
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise InvalidInput(f"outputs[{k}] must be an object with a 'name'")
            out_params = _parameters(raw.get("parameters"), f"outputs[{k}]")
            outputs.append(
                RequestedOutput(raw["name"], bool(out_params.get("binary_data", binary_output)))
            )
    request_id = header.get("id")
    return InferRequest(
        id=str(request_id) if request_id is not None else None,
        inputs=inputs,
        outputs=outputs,
        binary_output=binary_output,
    )


def encode_infer_response(
    model: str,
    version: str,
    request_id: str | None,
    outputs: list[tuple[str, np.ndarray, bool]],
) -> tuple[bytes, int | None]:
    """Body and, when any output is binary, the JSON header's length.

    ``outputs`` holds ``(name, array, binary)``; arrays are float32 (``FP32``).
    """
    entries = []
    blobs = []
    for name, array, binary in outputs:
        data = np.ascontiguousarray(array, dtype=np.float32)
        entry: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(data.shape)}
        if binary:
            blob = data.astype("<f4", copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = data.ravel()
        entries.append(entry)
    header: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": entries}
    if request_id is not None:
        header["id"] = request_id
    encoded = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return encoded, None
    return encoded + b"".join(blobs), len(encoded)
