"""Open Inference Protocol (KServe V2) REST API: health, metadata and infer.

Works with the ``tritonclient`` HTTP client unchanged, in JSON and with binary tensors.
Inputs of an infer request: ``inputs`` ``[B, T, F]`` (or one sequence ``[T, F]``) FP32, and
optionally ``lengths`` ``[B]`` (or ``[B, 1]``) INT32/INT64 — without it every sequence has
``T`` steps — and initial states ``initial_{c|h}_{n}`` ``[dirs, B, H_n]``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from service import __version__
from service.api.common import (
    INFERENCE_ERRORS,
    METADATA_ERRORS,
    AppContext,
    body_schema,
    context,
    json_response,
    observed,
    read_body,
    run_sequences,
    serving_model,
)
from service.api.v2_codec import HEADER_LENGTH, encode_infer_response, parse_infer_request
from service.api.validation import Limits, check_count, check_sequence, require_finite
from service.errors import InvalidInput
from service.registry import ServedModel
from service.runtime.session import INPUTS, LENGTHS, ModelSpec

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (KServe V2)"])


class V2Tensor(BaseModel):
    """A tensor in a request or response: ``data`` row-major (flat or nested), or its bytes
    after the JSON header when ``parameters.binary_data_size`` is set."""

    name: str
    shape: list[int]
    datatype: str = Field(examples=["FP32", "INT32"])
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class V2RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, examples=[{"binary_data": True}])


class V2InferRequest(BaseModel):
    """Inputs: ``inputs`` [B, T, F] FP32 (or [T, F]), ``lengths`` [B] INT32 (optional),
    ``initial_{c,h}_{n}`` [dirs, B, H] (optional)."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor]
    outputs: list[V2RequestedOutput] | None = None


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[V2Tensor]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]
    parameters: dict[str, Any] | None = None


DOC_MODELS: list[type[BaseModel]] = [V2InferRequest]

SERVER_NAME = "lstm-serving"


@router.get("", summary="Server metadata")
async def server_metadata() -> Response:
    return json_response(
        {"name": SERVER_NAME, "version": __version__, "extensions": ["binary_tensor_data"]}
    )


@router.get(
    "/health/live",
    summary="Liveness: 503 once a batcher has died, so an orchestrator restarts the process",
    responses={503: {"description": "a batcher died"}},
)
async def live(request: Request) -> Response:
    ctx: AppContext | None = getattr(request.app.state, "context", None)
    dead = [
        f"{m.name}/{m.version}"
        for m in (ctx.registry.all() if ctx else [])
        if m.batcher is not None and m.batcher.failure is not None
    ]
    if dead:
        return json_response({"live": False, "batchers_dead": dead}, 503)
    return json_response({"live": True})


@router.get(
    "/health/ready",
    summary="Readiness: every model loaded and its batcher running",
    responses={503: {"description": "not ready: which models are down"}},
)
async def ready(request: Request) -> Response:
    ctx: AppContext | None = getattr(request.app.state, "context", None)
    if ctx is None:
        return json_response({"ready": False, "reason": "starting"}, 503)
    down = {
        f"{m.name}/{m.version}": m.error or "batcher not running"
        for m in ctx.registry.all()
        if not m.ready
    }
    if ctx.registry.ready:
        return json_response({"ready": True})
    return json_response({"ready": False, "models_down": down}, 503)


def _tensor(name: str, shape: list[int], datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


def _metadata(served: ServedModel, all_versions: list[str]) -> dict[str, Any]:
    spec = served.spec
    return {
        "name": served.name,
        "versions": all_versions,
        "platform": "onnxruntime_onnx",
        "inputs": [
            _tensor(INPUTS, spec.input_shapes[INPUTS]),
            _tensor(LENGTHS, spec.input_shapes[LENGTHS], "INT32"),
        ],
        "outputs": [_tensor(name, spec.output_shapes[name]) for name in spec.output_names],
        "parameters": {
            "labels": spec.labels,
            "optional_inputs": [s.name for s in spec.state_inputs],
            "provider": served.runtime.provider if served.runtime else None,
        },
    }


async def _model_metadata(request: Request, name: str, version: str | None) -> Response:
    registry = context(request).registry
    served = registry.get(name, version)
    versions = sorted(registry.versions(name), key=int)
    return json_response(_metadata(served, versions))


async def _model_ready(request: Request, name: str, version: str | None) -> Response:
    served = context(request).registry.get(name, version)
    body = {"name": served.name, "version": served.version, "ready": served.ready}
    return json_response(body, 200 if served.ready else 503)


def _lengths(raw: np.ndarray | None, batch: int, steps: int) -> np.ndarray:
    if raw is None:
        return np.full(batch, steps, dtype=np.int64)
    if raw.dtype.kind not in "iu":
        raise InvalidInput("'lengths' must be INT32 or INT64")
    if raw.shape not in ((batch,), (batch, 1)):
        raise InvalidInput(
            f"'lengths' must have shape [{batch}] (one per sequence), got {list(raw.shape)}"
        )
    lengths = raw.reshape(batch).astype(np.int64)
    if batch and (lengths.min() < 1 or lengths.max() > steps):
        raise InvalidInput(
            f"'lengths' must lie in [1, {steps}] (the padded length); zero-length sequences "
            "are not accepted"
        )
    return lengths


def _split_inputs(
    inputs: dict[str, np.ndarray], spec: ModelSpec, limits: Limits
) -> tuple[list[np.ndarray], list[dict[str, np.ndarray] | None], int]:
    """Cut the padded batch into validated sequences; returns them, their states and ``T``."""
    state_names = {s.name: s for s in spec.state_inputs}
    unknown = set(inputs) - {INPUTS, LENGTHS} - set(state_names)
    if unknown:
        raise InvalidInput(f"unknown inputs {sorted(unknown)}; expected {INPUTS!r}, {LENGTHS!r}")
    if INPUTS not in inputs:
        raise InvalidInput(f"the request has no {INPUTS!r} input")
    batch_input = inputs[INPUTS]
    if batch_input.dtype.kind != "f":
        raise InvalidInput(f"{INPUTS!r} must be FP32 (or FP16/FP64)")
    if batch_input.ndim == 2:
        batch_input = batch_input[np.newaxis]  # a single sequence [T, F]
    if batch_input.ndim != 3 or batch_input.shape[2] != spec.input_size:
        raise InvalidInput(
            f"{INPUTS!r} must have shape [B, T, {spec.input_size}] or [T, {spec.input_size}], "
            f"got {list(inputs[INPUTS].shape)}"
        )
    batch, steps = batch_input.shape[:2]
    check_count(batch, limits)
    if steps == 0:
        raise InvalidInput("zero-length sequences are not accepted")
    lengths = _lengths(inputs.get(LENGTHS), batch, steps)
    sequences = [
        check_sequence(batch_input[b, : lengths[b]], spec, limits, f"sequence {b} of {INPUTS!r}")
        for b in range(batch)
    ]
    states: list[dict[str, np.ndarray] | None] = [None] * batch
    given = [name for name in state_names if name in inputs]
    if given:
        per_sequence: list[dict[str, np.ndarray]] = [{} for _ in range(batch)]
        for name in given:
            expected = (state_names[name].directions, batch, state_names[name].width)
            array = inputs[name]
            if array.shape != expected:
                raise InvalidInput(
                    f"{name!r} must have shape {list(expected)}, got {list(array.shape)}"
                )
            array = array.astype(np.float32)
            require_finite(array, repr(name))
            for b in range(batch):
                per_sequence[b][name] = array[:, b]
        states = list(per_sequence)
    return sequences, states, steps


def _assemble(name: str, results: list[dict[str, np.ndarray]], steps: int) -> np.ndarray:
    """Stack per-sequence results back into the request's batch layout."""
    if name == "outputs":
        width = results[0][name].shape[1]
        stacked = np.zeros((len(results), steps, width), dtype=np.float32)
        for b, result in enumerate(results):
            stacked[b, : len(result[name])] = result[name]
        return stacked
    axis = 1 if name.startswith("final_") else 0
    return np.stack([result[name] for result in results], axis=axis)


async def infer_handler(request: Request, name: str, version: str | None) -> Response:
    arrived = time.monotonic()
    ctx = context(request)
    async with observed(ctx, name, "v2", arrived):
        served = serving_model(ctx, name, version)
        spec = served.spec
        deadline = arrived + ctx.settings.request_timeout_s
        body = await read_body(request, ctx.settings.max_body_bytes, deadline)
        limits = Limits(ctx.settings.max_sequences_per_request, ctx.settings.max_sequence_length)
        max_elements = limits.max_sequences * limits.max_length * max(spec.input_size, 1)
        parsed = parse_infer_request(body, request.headers.get(HEADER_LENGTH), max_elements)
        sequences, states, steps = _split_inputs(parsed.inputs, spec, limits)
        if parsed.outputs is None:
            wanted = [(n, parsed.binary_output) for n in spec.output_names]
        else:
            wanted = [(o.name, o.binary) for o in parsed.outputs]
            unknown = [n for n, _ in wanted if n not in spec.output_names]
            if unknown:
                raise InvalidInput(f"unknown outputs {unknown}; this model has {spec.output_names}")
        results = await run_sequences(
            request, ctx, served, sequences, states, frozenset(n for n, _ in wanted), arrived
        )
        outputs = [(n, _assemble(n, results, steps), binary) for n, binary in wanted]
        body_out, header_length = encode_infer_response(
            served.name, served.version, parsed.id, outputs
        )
        if header_length is None:
            return Response(body_out, media_type="application/json")
        return Response(
            body_out,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )


Name = Annotated[str, Path(description="model name")]
Version = Annotated[str, Path(description="model version (a positive integer)")]


_metadata_doc: dict[str, Any] = {"response_model": V2ModelMetadata, "responses": METADATA_ERRORS}
_infer_doc: dict[str, Any] = {
    "response_model": V2InferResponse,
    "responses": {
        200: {
            "content": {
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                }
            },
            "description": "JSON, or with binary outputs a JSON header of "
            "Inference-Header-Content-Length bytes followed by the tensors",
        },
        **INFERENCE_ERRORS,
    },
    "openapi_extra": body_schema(V2InferRequest),
}


@router.get("/models/{name}", summary="Model metadata (default version)", **_metadata_doc)
async def model_metadata(request: Request, name: Name) -> Response:
    return await _model_metadata(request, name, None)


@router.get("/models/{name}/versions/{version}", summary="Model metadata", **_metadata_doc)
async def model_version_metadata(request: Request, name: Name, version: Version) -> Response:
    return await _model_metadata(request, name, version)


@router.get(
    "/models/{name}/ready", summary="Model readiness (default version)", responses=METADATA_ERRORS
)
async def model_ready(request: Request, name: Name) -> Response:
    return await _model_ready(request, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready", summary="Model readiness", responses=METADATA_ERRORS
)
async def model_version_ready(request: Request, name: Name, version: Version) -> Response:
    return await _model_ready(request, name, version)


@router.post("/models/{name}/infer", summary="Inference (default version)", **_infer_doc)
async def infer(request: Request, name: Name) -> Response:
    return await infer_handler(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", summary="Inference", **_infer_doc)
async def infer_version(request: Request, name: Name, version: Version) -> Response:
    return await infer_handler(request, name, version)
