"""What a served model is, as the service knows it, and the axis rules of its outputs.

Standard library only (no ONNX Runtime, numpy, torch or FastAPI): the HTTP codec processes and
other processes receive a ``ModelSpec`` pickled or as JSON (``ModelSpec.to_dict``). The spec is
read from a session by ``contract.sessions.read_spec``.

Shapes (``docs/model-contract.md``): ``B`` batch, ``T`` padded time, ``F`` input features,
``C`` classes, ``D`` per-step output width, ``dirs`` directions, ``H_n`` width of layer ``n``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contract.names import OUTPUTS

_FINAL_STATE_PREFIX = "final_"  # the state outputs final_{c|h}_{n}, (dirs, B, H_n)


def batch_axis(output_name: str) -> int:
    """The axis of output ``output_name`` that counts the batch: 1 for the final states
    ``(dirs, B, H_n)``, 0 for every other output (``(B, C)``, ``(B, T, D)``)."""
    return 1 if output_name.startswith(_FINAL_STATE_PREFIX) else 0


def is_per_step(output_name: str) -> bool:
    """Whether output ``output_name`` has a time axis (axis 1, padded to ``T``): ``outputs``
    ``(B, T, D)``, zero past each length, which a sequence's own result cuts to its length."""
    return output_name == OUTPUTS


class ContractError(ValueError):
    """The ONNX file does not follow the model contract."""


@dataclass(frozen=True)
class StateInput:
    """An optional initial-state input ``initial_{c|h}_{n}`` of shape ``(dirs, B, H_n)``."""

    name: str
    output: str  # the matching final-state output, e.g. final_c_0
    directions: int
    """``dirs``."""
    width: int
    """``H_n``."""


@dataclass(frozen=True)
class ModelSpec:
    """What the service knows of a served model, read from the ONNX file."""

    name: str
    version: str
    input_size: int
    """``F``."""
    num_classes: int
    """``C``."""
    labels: list[str]
    state_inputs: list[StateInput]
    """Sorted by name."""
    output_names: list[str]
    """In graph order."""
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    """Shapes of the required inputs, -1 where dynamic."""
    output_shapes: dict[str, list[int]] = field(default_factory=dict)
    """Shapes of the outputs, -1 where dynamic."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The model's ``metadata_props``: JSON objects and lists decoded (``parity``,
    ``layer_sizes``, ``labels``), every other value the string stored."""

    @property
    def layers(self) -> int:
        return len(self.state_inputs) // 2

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-safe values (``json.dumps`` takes it as it is); ``from_dict``
        reverses it."""
        return {
            "name": self.name,
            "version": self.version,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "labels": list(self.labels),
            "state_inputs": [
                {"name": s.name, "output": s.output, "directions": s.directions, "width": s.width}
                for s in self.state_inputs
            ],
            "output_names": list(self.output_names),
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "output_shapes": {k: list(v) for k, v in self.output_shapes.items()},
            # Already JSON values: decode_metadata made them from JSON text or kept the string.
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """The spec ``to_dict`` gave (after a JSON round trip too); ``KeyError`` or
        ``TypeError`` when a field is missing or of the wrong kind."""
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            input_size=int(data["input_size"]),
            num_classes=int(data["num_classes"]),
            labels=[str(label) for label in data["labels"]],
            state_inputs=[
                StateInput(str(s["name"]), str(s["output"]), int(s["directions"]), int(s["width"]))
                for s in data["state_inputs"]
            ],
            output_names=[str(n) for n in data["output_names"]],
            input_shapes={k: [int(d) for d in v] for k, v in data["input_shapes"].items()},
            output_shapes={k: [int(d) for d in v] for k, v in data["output_shapes"].items()},
            metadata=dict(data["metadata"]),
        )


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """ONNX ``metadata_props`` are strings; those holding a JSON object or list become that
    object or list, so that a client reads ``parity`` as an object, not JSON in a string.
    Scalars stay strings (``"version": "1"`` is a name, not a number)."""
    decoded: dict[str, Any] = {}
    for key, text in props.items():
        value: Any = text
        if text.lstrip().startswith(("{", "[")):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None  # not JSON after all: kept as the string it is
            if isinstance(parsed, dict | list):
                value = parsed
        decoded[key] = value
    return decoded
