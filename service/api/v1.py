"""The simple JSON API for people: ``/v1/models`` and ``/v1/models/{name}/predict``.

Bodies are decoded with orjson straight into numpy (pydantic would build millions of float
objects first); the pydantic models below document the API in the OpenAPI schema.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from service.api.common import (
    INFERENCE_ERRORS,
    METADATA_ERRORS,
    body_schema,
    context,
    decode_json,
    json_response,
    observed,
    read_body,
    run_sequences,
    serving_model,
)
from service.api.validation import Limits, parse_json_initial_states, parse_json_sequences
from service.errors import InvalidInput
from service.registry import ServedModel

router = APIRouter(prefix="/v1", tags=["simple JSON API"])

ReturnField = Literal["label", "probabilities", "logits", "outputs", "final_state"]
DEFAULT_RETURN: tuple[ReturnField, ...] = ("label", "probabilities")
_ONNX_OUTPUTS_FOR: dict[str, tuple[str, ...]] = {
    "label": ("probs",),
    "probabilities": ("probs",),
    "logits": ("logits",),
    "outputs": ("outputs",),
    "final_state": (),  # filled per model: every final_c_n / final_h_n
}


class LayerState(BaseModel):
    """One layer's state: ``c`` and ``h``, each ``[directions][hidden]``."""

    c: list[list[float]]
    h: list[list[float]]


class PredictRequest(BaseModel):
    sequences: list[list[list[float]]] = Field(
        description="One or more sequences, each a list of steps of F numbers; lengths may differ.",
        examples=[[[[0.1] * 12] * 3, [[0.2] * 12] * 5]],
    )
    return_: list[ReturnField] = Field(
        default=list(DEFAULT_RETURN),
        alias="return",
        description="What to return per sequence.",
    )
    initial_states: list[list[LayerState] | None] | None = Field(
        default=None,
        description="Per sequence: null (zeros) or one {c, h} per layer, e.g. the final_state "
        "of the previous chunk, to run a long sequence chunk by chunk.",
    )


DOC_MODELS: list[type[BaseModel]] = []  # filled below


class SequenceResult(BaseModel):
    label: str | None = None
    class_index: int | None = None
    probabilities: list[float] | None = None
    logits: list[float] | None = None
    outputs: list[list[float]] | None = Field(None, description="Per-step outputs [L][D].")
    final_state: list[LayerState] | None = None


class PredictResponse(BaseModel):
    model: str
    version: str
    labels: list[str]
    results: list[SequenceResult]


DOC_MODELS.append(PredictRequest)


def model_summary(served: ServedModel) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "name": served.name,
        "version": served.version,
        "ready": served.ready,
    }
    if served.runtime is None:
        summary["error"] = served.error
        return summary
    spec = served.runtime.spec
    summary.update(
        provider=served.runtime.provider,
        input_size=spec.input_size,
        labels=spec.labels,
        layers=spec.layers,
        accepts_initial_states=bool(spec.state_inputs),
        metadata=spec.metadata,
    )
    return summary


@router.get("/models", summary="List the models and their metadata", responses=METADATA_ERRORS)
async def list_models(request: Request) -> Response:
    ctx = context(request)
    return json_response({"models": [model_summary(m) for m in ctx.registry.all()]})


@router.get(
    "/models/{name}",
    summary="One model's metadata (its default version)",
    responses=METADATA_ERRORS,
)
async def get_model(request: Request, name: Annotated[str, Path()]) -> Response:
    return json_response(model_summary(context(request).registry.get(name)))


def _wanted(raw: Any) -> tuple[ReturnField, ...]:
    if raw is None:
        return DEFAULT_RETURN
    allowed = set(_ONNX_OUTPUTS_FOR)
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(r, str) and r in allowed for r in raw)
    ):
        raise InvalidInput(f"'return' must be a non-empty list drawn from {sorted(allowed)}")
    return tuple(raw)


def _format(
    result: dict[str, np.ndarray], wanted: tuple[str, ...], served: ServedModel
) -> dict[str, Any]:
    spec = served.spec
    out: dict[str, Any] = {}
    if "label" in wanted:
        index = int(np.argmax(result["probs"]))
        out["label"], out["class_index"] = spec.labels[index], index
    if "probabilities" in wanted:
        out["probabilities"] = result["probs"]
    if "logits" in wanted:
        out["logits"] = result["logits"]
    if "outputs" in wanted:
        out["outputs"] = result["outputs"]
    if "final_state" in wanted:
        out["final_state"] = [
            {"c": result[f"final_c_{n}"], "h": result[f"final_h_{n}"]} for n in range(spec.layers)
        ]
    return out


async def predict_handler(request: Request, name: str, version: str | None) -> Response:
    arrived = time.monotonic()
    ctx = context(request)
    async with observed(ctx, name, "v1", arrived):
        served = serving_model(ctx, name, version)
        spec = served.spec
        deadline = arrived + ctx.settings.request_timeout_s
        body = decode_json(await read_body(request, ctx.settings.max_body_bytes, deadline))
        if not isinstance(body, dict) or "sequences" not in body:
            raise InvalidInput('the body must be a JSON object with "sequences"')
        unknown = set(body) - {"sequences", "return", "initial_states"}
        if unknown:
            raise InvalidInput(f"unknown fields: {sorted(unknown)}")
        limits = Limits(ctx.settings.max_sequences_per_request, ctx.settings.max_sequence_length)
        sequences = parse_json_sequences(body["sequences"], spec, limits)
        states = parse_json_initial_states(body.get("initial_states"), len(sequences), spec)
        wanted = _wanted(body.get("return"))
        if "final_state" in wanted and not spec.state_inputs:
            raise InvalidInput(f"model {name} does not expose its states")
        onnx_names = {n for w in wanted for n in _ONNX_OUTPUTS_FOR[w]}
        if "final_state" in wanted:
            onnx_names |= {s.output for s in spec.state_inputs}
        results = await run_sequences(
            request, ctx, served, sequences, states, frozenset(onnx_names), arrived
        )
        return json_response(
            {
                "model": served.name,
                "version": served.version,
                "labels": spec.labels,
                "results": [_format(r, wanted, served) for r in results],
            }
        )


_predict_doc = {
    "response_model": PredictResponse,
    "responses": INFERENCE_ERRORS,
    "openapi_extra": body_schema(PredictRequest),
    "summary": "Classify one or more variable-length sequences",
}


@router.post("/models/{name}/predict", **_predict_doc)  # type: ignore[arg-type]
async def predict(request: Request, name: Annotated[str, Path()]) -> Response:
    return await predict_handler(request, name, None)


@router.post("/models/{name}/versions/{version}/predict", **_predict_doc)  # type: ignore[arg-type]
async def predict_version(
    request: Request, name: Annotated[str, Path()], version: Annotated[str, Path()]
) -> Response:
    return await predict_handler(request, name, version)
