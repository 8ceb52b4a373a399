"""Open Inference Protocol (KServe V2) REST API: health, metadata and infer.

Works with the ``tritonclient`` HTTP client unchanged, in JSON and with binary tensors.
The wire format, what an infer request holds and what it may ask for: ``v2_codec``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from service import __version__
from service.frontend.api.context import AppContext, context
from service.frontend.api.docs import INFERENCE_ERRORS, METADATA_ERRORS
from service.frontend.api.inference import admit_and_decode, observed, run_sequences
from service.frontend.api.responses import json_response
from service.frontend.api.routes import InferenceRoute, Name, Version
from service.frontend.api.v2_codec import (
    HEADER_LENGTH,
    decode_infer_request,
    encode_infer_results,
    input_datatype,
)
from service.registry import ServedModel

TAGS = ("Open Inference Protocol (KServe V2)",)
router = APIRouter(prefix="/v2", tags=list(TAGS))


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


SERVER_NAME = "lstm-serving"


@router.get("", summary="Server metadata")
async def server_metadata() -> Response:
    return json_response(
        {
            "name": SERVER_NAME,
            "version": __version__,
            "extensions": ["binary_tensor_data", "sequence"],
        }
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
            _tensor(name, shape, input_datatype(name, spec))
            for name, shape in spec.input_shapes.items()
        ],
        "outputs": [_tensor(o.name, o.shape, o.datatype) for o in spec.outputs],
        "parameters": {
            "labels": spec.labels,
            "optional_inputs": [s.name for s in spec.state_inputs],
            "provider": served.runtime.provider if served.runtime else None,
            **spec.signature(),
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


async def infer_handler(request: Request, name: str, version: str | None) -> Response:
    arrived = time.monotonic()
    ctx = context(request)
    async with observed(ctx, name, "v2", arrived):
        served, deadline, decoded = await admit_and_decode(
            request,
            ctx,
            name,
            version,
            arrived,
            decode_infer_request,
            request.headers.get(HEADER_LENGTH),
        )
        wanted = frozenset(o.name for o in decoded.outputs)
        results = await run_sequences(
            request, ctx, served, decoded.sequences, decoded.states, wanted, arrived, decoded.stream
        )
        body_out, header_length = await ctx.offload.run(
            decoded.response_bytes,
            deadline,
            encode_infer_results,
            served.name,
            served.version,
            decoded.id,
            decoded.outputs,
            results,
            decoded.steps,
        )
        if header_length is None:
            return Response(body_out, media_type="application/json")
        return Response(
            body_out,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )


_metadata_doc: dict[str, Any] = {"response_model": V2ModelMetadata, "responses": METADATA_ERRORS}


# Each route twice, without and with /versions/{version}: one decorator documents one path in
# OpenAPI, with its own path parameters; the bodies only call the handlers above. (Inference is
# declared once, in INFER, for both FastAPI and the fast path.)
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


INFER = InferenceRoute(
    prefix="/v2",
    action="infer",
    handler=infer_handler,
    summary="Inference",
    tags=TAGS,
    body=V2InferRequest,
    response_model=V2InferResponse,
    responses={
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
)
