"""Open Inference Protocol (KServe V2) REST bodies, with the binary tensor data extension.

A binary request is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the
raw tensors, in input order, for each input whose ``parameters.binary_data_size`` is set
(row-major, little-endian). A response carries binary outputs the same way when asked
(``parameters.binary_data`` on an output, or ``binary_data_output`` on the request: ``true``
or ``false``, or those two strings).

Inputs of a model, by the names its graph gives them (``ModelSpec``; the contract's are
``inputs`` and ``lengths``): the sequence input ``[B, T, F]`` (``[T, B, F]`` for a time-major
model; or one sequence ``[T, F]``) FP32, optionally the lengths input ``[B]`` (or ``[B, 1]``)
in the graph's integer datatype — without it every sequence has ``T`` steps — and optionally
initial states ``initial_{c|h}_{n}`` ``[dirs, B, H_n]`` FP32. Exactly these datatypes, the
ones the model metadata gives, are accepted (as Triton does): FP16 would round
the inputs, and a silent conversion would make the same request mean different things here
and on Triton. Everything a header says (names, datatypes, shapes, ``T`` against
``max_sequence_length``, the response's size) is checked before any tensor is built.

Every output comes back in the graph's layout (``contract.spec.OutputSpec``): a per-step output
such as ``outputs`` ``[B, T_out, D]`` has ``T_out`` the longest of the ``lengths`` (not the
padded ``T`` of the request), zero past each sequence's length.

Like ``validation``, this module imports neither ONNX Runtime nor FastAPI: its decoder and
encoder run in the codec processes too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from contract.spec import ModelSpec, OutputSpec
from service.errors import InvalidInput, MalformedRequest
from service.frontend.api.validation import (
    BINARY_BYTES_PER_VALUE,
    JSON_BYTES_PER_VALUE,
    RequestRules,
    as_integers,
    check_count,
    check_response_size,
    check_sequence,
    check_stream,
    decode_json,
    may_hold_booleans,
    numeric_array,
    require_finite,
)
from service.streaming import StreamChunk, stream_chunk

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
"""The V2 datatypes of numbers, for reading tensors; which one each input accepts is
``input_datatype``."""
INPUT_DATATYPE = "FP32"
MAX_RANK = 4  # inputs [B, T, F], lengths [B] or [B, 1], states [dirs, B, H]


def input_datatype(name: str, spec: ModelSpec) -> str:
    """The one datatype accepted (and advertised in the metadata) for input ``name``: the
    graph's for the lengths (INT32 or INT64), FP32 for the sequence and the states."""
    return spec.lengths_datatype if name == spec.lengths_input else INPUT_DATATYPE


@dataclass(frozen=True)
class RequestedOutput:
    output: OutputSpec
    """The output asked for, with the axes its answer is assembled on."""
    binary: bool

    @property
    def name(self) -> str:
        return self.output.name


@dataclass(frozen=True)
class InferInput:
    """A validated infer request: ``sequences[b]`` ``(L_b, F)`` float32, per sequence its
    initial states (``(dirs, H_n)`` each) or None, the outputs to return, ``steps`` = the time
    axis of per-step outputs in the response (the longest length), and the response's
    estimated size in bytes."""

    id: str | None
    sequences: list[np.ndarray]
    states: list[dict[str, np.ndarray] | None]
    outputs: list[RequestedOutput]
    steps: int
    response_bytes: int
    stream: StreamChunk | None = None
    """The stream this request is a chunk of (parameters ``sequence_id``...), or None."""


@dataclass
class _Tensor:
    """One input as its header describes it; ``array`` builds it (the only costly step)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    binary: memoryview | None
    data: Any

    @property
    def where(self) -> str:
        return f"input {self.name!r}"

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def array(self, booleans_possible: bool) -> np.ndarray:
        dtype = DATATYPES[self.datatype]
        if self.binary is not None:
            return np.frombuffer(self.binary, dtype=dtype).reshape(self.shape)
        where, data = self.where, self.data
        flat = isinstance(data, list) and not (data and isinstance(data[0], list))
        if flat and len(data) != self.count:  # refused before numpy builds anything
            raise InvalidInput(
                f"{where}.data holds {len(data)} values; shape {list(self.shape)} needs "
                f"{self.count}"
            )
        array = numeric_array(data, f"{where}.data", booleans_possible)
        if array.size != self.count:
            raise InvalidInput(
                f"{where}.data holds {array.size} values; shape {list(self.shape)} needs "
                f"{self.count}"
            )
        native = dtype.newbyteorder("=")
        if native.kind in "iu":
            array = as_integers(array, native, where, self.datatype)
        else:
            with np.errstate(over="ignore"):  # beyond float32: inf, refused where checked
                array = array.astype(native, copy=False)
        return array.reshape(self.shape)


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


def _flag(value: Any, where: str) -> bool:
    """A JSON boolean, or the strings "true"/"false" (some clients send those); nothing else:
    ``bool("false")`` is True."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    raise InvalidInput(f"{where} must be true or false, got {shown}")


def _split_body(body: bytes, header_length: str | None) -> tuple[Any, bytes, memoryview]:
    """The decoded JSON header, its text, and the binary tensor data after it."""
    if header_length is None:
        return decode_json(body), body, memoryview(b"")
    if not _is_count(header_length) or int(header_length) > len(body):
        raise MalformedRequest(
            f"Inference-Header-Content-Length {header_length!r} does not fit a body of "
            f"{len(body)} bytes"
        )
    split = int(header_length)
    text = body[:split]
    return decode_json(text, "the inference header"), text, memoryview(body)[split:]


def _tensors(header: dict[str, Any], binary: memoryview, rules: RequestRules) -> dict[str, _Tensor]:
    """Each input's header checked (name, datatype, shape, binary size); no data touched."""
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    spec = rules.spec
    known = [spec.sequence_input, *([spec.lengths_input] if spec.lengths_input else [])]
    known += [s.name for s in rules.states]
    max_elements = rules.max_sequences * rules.max_length * max(rules.input_size, 1)
    tensors: dict[str, _Tensor] = {}
    offset = 0
    for k, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InvalidInput(f"inputs[{k}] must be an object with a 'name'")
        name = raw["name"]
        if name in tensors:
            raise InvalidInput(f"input {name!r} is given twice")
        if name not in known:
            raise InvalidInput(
                f"unknown inputs [{name!r}]; model {rules.model} has {', '.join(map(repr, known))}"
            )
        where = f"input {name!r}"
        shape = _shape(raw.get("shape"), where, max_elements)
        count = math.prod(shape)
        if count > max_elements:
            raise InvalidInput(f"{where} has {count} elements; the limit is {max_elements}")
        datatype, accepted = raw.get("datatype"), input_datatype(name, spec)
        if datatype != accepted:
            shown = repr(datatype)[:40]
            raise InvalidInput(
                f"{where} has datatype {shown}; model {rules.model} accepts only {accepted} "
                "for it (the datatype its metadata gives)"
            )
        params = _parameters(raw.get("parameters"), where)
        blob = None
        if "binary_data_size" in params:
            size, expected = params["binary_data_size"], count * DATATYPES[datatype].itemsize
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise MalformedRequest(f"{where}.binary_data_size must be a non-negative integer")
            if size != expected:
                raise MalformedRequest(
                    f"{where}: binary_data_size {size} does not match shape {list(shape)} of "
                    f"{datatype} ({expected} bytes)"
                )
            if offset + size > len(binary):
                raise MalformedRequest(
                    f"{where}: binary data ends after {len(binary) - offset} of {size} bytes"
                )
            blob = binary[offset : offset + size]
            offset += size
        elif "data" not in raw:
            raise InvalidInput(f"{where} has neither 'data' nor parameters.binary_data_size")
        tensors[name] = _Tensor(name, datatype, shape, blob, raw.get("data"))
    if offset != len(binary):
        raise MalformedRequest(f"{len(binary) - offset} bytes of binary data belong to no input")
    return tensors


def _batch_and_steps(tensors: dict[str, _Tensor], rules: RequestRules) -> tuple[int, int]:
    """``B`` and the padded length ``T`` from the shape of the sequence input, both within the
    limits, and the other inputs' shapes checked against them."""
    spec = rules.spec
    sequence, lengths_input = spec.sequence_input, spec.lengths_input
    if sequence not in tensors:
        raise InvalidInput(f"the request has no {sequence!r} input")
    shape = tensors[sequence].shape
    layout = "T, B" if spec.time_major else "B, T"
    if len(shape) not in (2, 3) or shape[-1] != rules.input_size:
        raise InvalidInput(
            f"{sequence!r} must have shape [{layout}, {rules.input_size}] or "
            f"[T, {rules.input_size}], got {list(shape)}"
        )
    if len(shape) == 2:
        batch, steps = 1, shape[0]
    else:
        batch, steps = (shape[1], shape[0]) if spec.time_major else shape[:2]
    check_count(batch, rules)
    if steps == 0:
        raise InvalidInput("zero-length sequences are not accepted")
    if steps > rules.max_length:
        raise InvalidInput(
            f"{sequence!r} has T = {steps} steps (its padded length); the limit is "
            f"{rules.max_length} (max_sequence_length)"
        )
    if lengths_input in tensors and tensors[lengths_input].shape not in ((batch,), (batch, 1)):
        raise InvalidInput(
            f"{lengths_input!r} must have shape [{batch}] (one per sequence), got "
            f"{list(tensors[lengths_input].shape)}"
        )
    for state in rules.states:
        expected = (state.directions, batch, state.width)
        if state.name in tensors and tensors[state.name].shape != expected:
            raise InvalidInput(
                f"{state.name!r} must have shape {list(expected)}, got "
                f"{list(tensors[state.name].shape)}"
            )
    return batch, steps


def _requested_outputs(header: dict[str, Any], rules: RequestRules) -> list[RequestedOutput]:
    params = _parameters(header.get("parameters"), "the request")
    binary_output = _flag(params.get("binary_data_output", False), "parameters.binary_data_output")
    spec = rules.spec
    if "outputs" not in header:
        return [RequestedOutput(output, binary_output) for output in spec.outputs]
    raw_outputs = header["outputs"]
    if not isinstance(raw_outputs, list) or not raw_outputs:
        raise InvalidInput("'outputs' must be a non-empty list (leave it out for every output)")
    outputs = []
    for k, raw in enumerate(raw_outputs):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InvalidInput(f"outputs[{k}] must be an object with a 'name'")
        out_params = _parameters(raw.get("parameters"), f"outputs[{k}]")
        binary = _flag(
            out_params.get("binary_data", binary_output), f"outputs[{k}].parameters.binary_data"
        )
        if raw["name"] not in rules.output_shapes:
            unknown = [o["name"] for o in raw_outputs if o["name"] not in rules.output_shapes]
            raise InvalidInput(f"unknown outputs {unknown}; this model has {rules.output_names}")
        outputs.append(RequestedOutput(spec.output(raw["name"]), binary))
    return outputs


def infer_response_bytes(
    outputs: Sequence[RequestedOutput], batch: int, steps: int, rules: RequestRules
) -> int:
    """An upper bound on the response's size: ``steps`` is the time axis of ``outputs``."""
    size = 256
    for output in outputs:
        per_value = BINARY_BYTES_PER_VALUE if output.binary else JSON_BYTES_PER_VALUE
        size += 128 + rules.output_values(output.name, batch, steps) * per_value
    return size


def _lengths(tensor: _Tensor | None, batch: int, steps: int, booleans: bool) -> np.ndarray:
    if tensor is None:
        return np.full(batch, steps, dtype=np.int64)
    lengths = tensor.array(booleans).reshape(batch).astype(np.int64)
    if lengths.min() < 1 or lengths.max() > steps:
        raise InvalidInput(
            f"{tensor.name!r} must lie in [1, {steps}] (the padded length); zero-length "
            "sequences are not accepted"
        )
    return lengths


def decode_infer_request(body: bytes, header_length: str | None, rules: RequestRules) -> InferInput:
    """Decode and validate an infer body (JSON, or a JSON header and binary tensors).

    What the header says is checked first, then ``lengths`` is built and the response's size
    bounded; only then is the (large) ``inputs`` tensor built and cut into sequences.
    """
    header, text, binary = _split_body(body, header_length)
    if not isinstance(header, dict):
        raise InvalidInput("the inference request must be a JSON object")
    tensors = _tensors(header, binary, rules)
    batch, steps = _batch_and_steps(tensors, rules)
    outputs = _requested_outputs(header, rules)
    booleans = may_hold_booleans(text)
    spec = rules.spec
    lengths = _lengths(tensors.get(spec.lengths_input or ""), batch, steps, booleans)
    longest = int(lengths.max())
    response_bytes = infer_response_bytes(outputs, batch, longest, rules)
    check_response_size(
        response_bytes,
        rules,
        "ask for fewer outputs or for binary ones (binary_data), or send fewer or shorter "
        "sequences",
    )
    sequence_input = spec.sequence_input
    padded = tensors[sequence_input].array(booleans)
    if spec.time_major and padded.ndim == 3:
        padded = padded.transpose(1, 0, 2)  # (B, T, F) views; check_sequence makes them compact
    padded = padded.reshape(batch, steps, rules.input_size)
    sequences = [
        check_sequence(padded[b, : lengths[b]], rules, f"sequence {b} of {sequence_input!r}")
        for b in range(batch)
    ]
    states: list[dict[str, np.ndarray] | None] = [None] * batch
    given = [s.name for s in rules.states if s.name in tensors]
    if given:
        per_sequence: list[dict[str, np.ndarray]] = [{} for _ in range(batch)]
        for name in given:
            array = tensors[name].array(booleans).astype(np.float32, copy=False)
            require_finite(array, repr(name))
            for b in range(batch):
                per_sequence[b][name] = array[:, b]
        states = list(per_sequence)
    params = _parameters(header.get("parameters"), "the request")
    stream = stream_chunk(
        params.get("sequence_id"),
        params.get("sequence_start"),
        params.get("sequence_end"),
        "parameters.",
    )
    if stream is not None:
        check_stream(stream, rules, batch, bool(given))
    request_id = header.get("id")
    return InferInput(
        id=str(request_id) if request_id is not None else None,
        sequences=sequences,
        states=states,
        outputs=outputs,
        steps=longest,
        response_bytes=response_bytes,
        stream=stream,
    )


def assemble(
    output: OutputSpec, results: Sequence[dict[str, np.ndarray]], steps: int
) -> np.ndarray:
    """Stack per-sequence results into the batch layout of ``output``: on its batch axis, and
    its time axis (if any) ``steps`` long, zero past each sequence's length. For the contract's
    graphs: ``outputs`` ``(B, steps, D)``, ``final_*`` ``(dirs, B, H_n)``, the others
    ``(B, C)``."""
    name = output.name
    time_axis = output.sequence_time_axis()
    if time_axis is None:
        return np.stack([result[name] for result in results], axis=output.batch_axis)
    first = results[0][name]
    shape = list(first.shape)
    shape[time_axis] = steps
    stacked = np.zeros((len(results), *shape), dtype=first.dtype)  # batch first, then moved
    for b, result in enumerate(results):
        index: list[slice | int] = [b] + [slice(None)] * len(shape)
        index[1 + time_axis] = slice(0, result[name].shape[time_axis])
        stacked[tuple(index)] = result[name]
    return np.moveaxis(stacked, 0, output.batch_axis)


def encode_infer_results(
    model: str,
    version: str,
    request_id: str | None,
    outputs: Sequence[RequestedOutput],
    results: Sequence[dict[str, np.ndarray]],
    steps: int,
) -> tuple[bytes, int | None]:
    """The response to a request whose per-sequence ``results`` came back: see
    ``encode_infer_response``."""
    arrays = [(o.name, assemble(o.output, results, steps), o.binary) for o in outputs]
    return encode_infer_response(model, version, request_id, arrays)


def _wire(array: np.ndarray) -> tuple[str, np.ndarray]:
    """The V2 datatype and little-endian data of an output: floats as FP32, and the int32, int64
    and bool outputs ``contract.sessions.probe_outputs`` admits as they are."""
    if array.dtype.kind == "f":
        return "FP32", np.ascontiguousarray(array, dtype="<f4")
    if array.dtype.kind == "b":
        return "BOOL", np.ascontiguousarray(array)
    if array.dtype == np.int32:
        return "INT32", np.ascontiguousarray(array, dtype="<i4")
    return "INT64", np.ascontiguousarray(array, dtype="<i8")


def encode_infer_response(
    model: str,
    version: str,
    request_id: str | None,
    outputs: list[tuple[str, np.ndarray, bool]],
) -> tuple[bytes, int | None]:
    """Body and, when any output is binary, the JSON header's length.

    ``outputs`` holds ``(name, array, binary)``; float arrays are answered as ``FP32``, integers
    as ``INT32`` or ``INT64``, booleans as ``BOOL`` (``contract.sessions.probe_outputs`` says
    which each output is).
    """
    entries = []
    blobs = []
    for name, array, binary in outputs:
        datatype, data = _wire(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(data.shape)}
        if binary:
            blob = data.tobytes()
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
