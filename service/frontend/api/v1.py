"""The simple JSON API for people: ``/v1/models`` and ``/v1/models/{name}/predict``.

Bodies are decoded with orjson straight into numpy (pydantic would build millions of float
objects first), by ``validation.decode_predict_request``, in a codec process when large; the
pydantic models below document the API in the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from service.frontend.api.context import context
from service.frontend.api.docs import INFERENCE_ERRORS, METADATA_ERRORS
from service.frontend.api.inference import admit_and_decode, observed, run_sequences
from service.frontend.api.responses import json_response
from service.frontend.api.routes import InferenceRoute
from service.frontend.api.validation import (
    DEFAULT_RETURN,
    decode_predict_request,
    encode_json,
)
from service.registry import ServedModel

log = logging.getLogger(__name__)

TAGS = ("simple JSON API",)
router = APIRouter(prefix="/v1", tags=list(TAGS))

ReturnField = Literal["label", "probabilities", "logits", "outputs", "final_state", "tensors"]


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
        default=list(DEFAULT_RETURN),  # type: ignore[arg-type]
        alias="return",
        description="What to return per sequence. The default: label and probabilities for a "
        "model with a class output, else tensors (every output by its name).",
    )
    initial_states: list[list[LayerState] | None] | None = Field(
        default=None,
        description="Per sequence: null (zeros) or one {c, h} per layer, e.g. the final_state "
        "of the previous chunk, to run a long sequence chunk by chunk.",
    )


class SequenceResult(BaseModel):
    label: str | None = None
    class_index: int | None = None
    probabilities: list[float] | None = None
    logits: list[float] | None = None
    outputs: list[list[float]] | None = Field(None, description="Per-step outputs [L][D].")
    final_state: list[LayerState] | None = None
    tensors: dict[str, Any] | None = Field(
        None, description="Every output of the model by its name, this sequence's part of it."
    )


class PredictResponse(BaseModel):
    model: str
    version: str
    labels: list[str]
    results: list[SequenceResult]


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
        outputs=spec.output_names,
        **spec.signature(),
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


EXAMPLES_FILENAME = "examples.json"
"""``<repository>/<name>/examples.json``, written by the export (``export/examples.py``)."""


@router.get(
    "/models/{name}/examples",
    summary="Example sequences for the model, with their true labels (read-only)",
    responses=METADATA_ERRORS,
)
async def get_examples(request: Request, name: Annotated[str, Path()]) -> Response:
    """The examples the export wrote next to the model (for the built-in models, JapaneseVowels
    test utterances); ``{"examples": []}`` for a model without any. The console's "try it" panel
    sends them."""
    ctx = context(request)
    served = ctx.registry.get(name)  # 404 for an unknown model; the name is a valid folder name
    path = ctx.settings.model_repository / served.name / EXAMPLES_FILENAME
    try:
        content = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        return json_response({"model": served.name, "source": None, "examples": []})
    try:
        body = orjson.loads(content)
        examples = [
            {"name": str(e["name"]), "label": str(e["label"]), "sequence": e["sequence"]}
            for e in body["examples"]
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        log.warning("unreadable examples file %s: %s", path, error)
        return json_response({"model": served.name, "source": None, "examples": []})
    return json_response({"model": served.name, "source": body.get("source"), "examples": examples})


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits.astype(np.float64) - logits.max())
    return (shifted / shifted.sum()).astype(np.float32)


def _format(
    result: dict[str, np.ndarray], wanted: tuple[str, ...], served: ServedModel
) -> dict[str, Any]:
    spec = served.spec
    out: dict[str, Any] = {}
    if "label" in wanted:
        assert spec.class_output is not None  # validation refused the field otherwise
        index = int(np.argmax(result[spec.class_output]))
        out["label"], out["class_index"] = spec.labels[index], index
    if "probabilities" in wanted:
        out["probabilities"] = (
            result[spec.probs_output]
            if spec.probs_output is not None
            else _softmax(result[str(spec.logits_output)])  # a model that gives only logits
        )
    if "logits" in wanted:
        out["logits"] = result[str(spec.logits_output)]
    if "outputs" in wanted:
        out["outputs"] = result["outputs"]
    if "final_state" in wanted:
        out["final_state"] = [
            {"c": result[f"final_c_{n}"], "h": result[f"final_h_{n}"]} for n in range(spec.layers)
        ]
    if "tensors" in wanted:
        # orjson writes arrays but not 0-d ones (a [B] output's row): those as their value.
        out["tensors"] = {
            name: result[name].item() if result[name].ndim == 0 else result[name]
            for name in spec.output_names
        }
    return out


async def predict_handler(request: Request, name: str, version: str | None) -> Response:
    arrived = time.monotonic()
    ctx = context(request)
    async with observed(ctx, name, "v1", arrived):
        served, deadline, decoded = await admit_and_decode(
            request, ctx, name, version, arrived, decode_predict_request
        )
        results = await run_sequences(
            request,
            ctx,
            served,
            decoded.sequences,
            decoded.states,
            decoded.output_names,
            arrived,
            decoded.stream,
        )
        content = {
            "model": served.name,
            "version": served.version,
            "labels": served.spec.labels,
            "results": [_format(r, decoded.wanted, served) for r in results],
        }
        encoded = await ctx.offload.run(decoded.response_bytes, deadline, encode_json, content)
        return Response(encoded, media_type="application/json")


PREDICT = InferenceRoute(
    prefix="/v1",
    action="predict",
    handler=predict_handler,
    summary="Classify one or more variable-length sequences",
    tags=TAGS,
    body=PredictRequest,
    response_model=PredictResponse,
    responses=INFERENCE_ERRORS,
)
