"""A frontend's registry: the models its engines describe, each scheduled by a
``RemoteBatcher`` over every engine (no session, no batcher, no ONNX Runtime here)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from contract.spec import ModelSpec
from service.handoff.client import EngineClient, RemoteBatcher
from service.handoff.messages import Description
from service.registry import ModelRegistry, RemoteRuntime, ServedModel
from service.settings import Settings


async def connect_engines(settings: Settings) -> tuple[ModelRegistry, list[EngineClient]]:
    """Connect to every engine of ``settings.engine_addresses`` and wait until each has
    described its models and answered a ping (within ``engine_start_timeout_s``)."""
    engines = [
        EngineClient(
            address,
            heartbeat_s=settings.engine_heartbeat_ms / 1000.0,
            timeout_s=settings.engine_timeout_s,
            retry_after_s=settings.retry_after_s,
        )
        for address in settings.engine_addresses
    ]
    try:
        descriptions = await asyncio.gather(
            *(e.start(settings.engine_start_timeout_s) for e in engines)
        )
    except BaseException:
        await asyncio.gather(*(e.close() for e in engines), return_exceptions=True)
        raise
    registry = ModelRegistry()
    for model in described_models(descriptions):
        served = ServedModel(str(model["name"]), str(model["version"]), error=model["error"])
        if model["spec"] is not None:
            served.runtime = RemoteRuntime(
                ModelSpec.from_dict(model["spec"]), str(model["provider"])
            )
            served.batcher = RemoteBatcher(
                served.name, served.version, engines, settings.max_queue_sequences
            )
        registry.add(served)
    return registry, engines


def described_models(descriptions: Sequence[Description]) -> list[dict[str, Any]]:
    """Each model version the engines describe, once: as the first engine that loaded it
    describes it (every engine loads the same repository, but a model that failed on one GPU
    may have loaded on another), else as the first describes its failure."""
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for description in descriptions:
        for model in description.models:
            key = (str(model["name"]), str(model["version"]))
            if key not in models or (models[key]["spec"] is None and model["spec"] is not None):
                models[key] = model
    return list(models.values())
