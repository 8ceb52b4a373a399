"""A ``ModelSpec`` as JSON-safe data, for the ``Description`` an engine sends its frontends."""

from __future__ import annotations

import dataclasses
from typing import Any

from service.runtime.session import ModelSpec, StateInput


def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def spec_from_dict(data: dict[str, Any]) -> ModelSpec:
    states = [StateInput(**state) for state in data["state_inputs"]]
    return ModelSpec(**{**data, "state_inputs": states})
