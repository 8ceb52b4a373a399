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
from functools import cached_property
from typing import Any

from contract.names import INPUTS, LENGTHS, OUTPUTS

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
class OutputSpec:
    """One graph output as the service serves it, its axes found by running the model
    (``contract.sessions.probe_outputs``)."""

    name: str
    datatype: str
    """The KServe V2 datatype it is answered in (``FP32`` for every float output)."""
    shape: list[int]
    """In the graph's layout: -1 on the batch axis and on the time axis."""
    batch_axis: int
    time_axis: int | None
    """The axis that follows the padded length ``T`` (cut to each sequence's length), or None."""

    def sequence_time_axis(self) -> int | None:
        """The time axis of one sequence's result, which has no batch axis."""
        if self.time_axis is None:
            return None
        return self.time_axis - (self.time_axis > self.batch_axis)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": list(self.shape),
            "batch_axis": self.batch_axis,
            "time_axis": self.time_axis,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputSpec:
        time_axis = data["time_axis"]
        return cls(
            name=str(data["name"]),
            datatype=str(data["datatype"]),
            shape=[int(d) for d in data["shape"]],
            batch_axis=int(data["batch_axis"]),
            time_axis=None if time_axis is None else int(time_axis),
        )


@dataclass(frozen=True)
class ModelSpec:
    """What the service knows of a served model, read from the ONNX file (and its
    ``config.pbtxt``): which input is the sequence and which the lengths, every output with its
    axes, and which outputs (if any) classify."""

    name: str
    version: str
    input_size: int
    """``F``."""
    labels: list[str]
    """One per class of the class output; empty when the model has none."""
    state_inputs: list[StateInput]
    """Sorted by name."""
    outputs: list[OutputSpec]
    """In graph order."""
    sequence_input: str = INPUTS
    lengths_input: str | None = LENGTHS
    """None: the model takes no lengths, so padding would change its results
    (``padding_sensitive``)."""
    lengths_datatype: str = "INT32"
    """``INT32`` or ``INT64``, as the graph takes it."""
    time_major: bool = False
    """The sequence input is ``[T, B, F]``, not ``[B, T, F]``."""
    probs_output: str | None = None
    """The ``[B, C]`` output of class probabilities, if the model has one."""
    logits_output: str | None = None
    """The ``[B, C]`` output of class logits, if the model has one."""
    max_batch_size: int | None = None
    """The most sequences one run may hold (``config.pbtxt``), or None for no limit of the
    model's own."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The model's ``metadata_props``: JSON objects and lists decoded (``parity``,
    ``layer_sizes``, ``labels``), every other value the string stored."""

    @property
    def layers(self) -> int:
        return len(self.state_inputs) // 2

    @property
    def padding_sensitive(self) -> bool:
        """No lengths input: only sequences of one length may share a run."""
        return self.lengths_input is None

    @property
    def batching(self) -> str:
        """How its sequences share runs: ``exact_length`` without a lengths input (padding
        would change its answers), else ``padded``."""
        return "exact_length" if self.padding_sensitive else "padded"

    @property
    def precision(self) -> str:
        """``fp32``, ``int8`` or ``fp16`` (metadata ``precision``; ``fp32`` when not given)."""
        return str(self.metadata.get("precision", "fp32"))

    def signature(self) -> dict[str, Any]:
        """The roles of its inputs and outputs, how it is batched and its precision, for
        metadata and logs."""
        return {
            "precision": self.precision,
            "sequence_input": self.sequence_input,
            "lengths_input": self.lengths_input,
            "sequence_layout": "time_major" if self.time_major else "batch_major",
            "batching": self.batching,
            "probabilities_output": self.probs_output,
            "logits_output": self.logits_output,
        }

    @property
    def num_classes(self) -> int:
        """``C``, 0 when no output classifies."""
        return len(self.labels)

    @property
    def class_output(self) -> str | None:
        """The output a class is read from: the probabilities, else the logits."""
        return self.probs_output or self.logits_output

    # Cached: the codec looks outputs up by name for every request (a frozen dataclass keeps
    # them in its __dict__, outside the fields that equality and to_dict use).
    @cached_property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    @cached_property
    def output_shapes(self) -> dict[str, list[int]]:
        return {o.name: o.shape for o in self.outputs}

    @cached_property
    def _outputs_by_name(self) -> dict[str, OutputSpec]:
        return {o.name: o for o in self.outputs}

    @property
    def input_shapes(self) -> dict[str, list[int]]:
        """The shapes of the inputs a request gives, in the graph's layout, -1 where dynamic."""
        steps_first = [-1, -1, self.input_size]
        shapes = {self.sequence_input: steps_first}
        if self.lengths_input is not None:
            shapes[self.lengths_input] = [-1]
        return shapes

    def output(self, name: str) -> OutputSpec:
        """The output ``name``; ``KeyError`` when the model has none of that name."""
        return self._outputs_by_name[name]

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-safe values (``json.dumps`` takes it as it is); ``from_dict``
        reverses it."""
        return {
            "name": self.name,
            "version": self.version,
            "input_size": self.input_size,
            "labels": list(self.labels),
            "state_inputs": [
                {"name": s.name, "output": s.output, "directions": s.directions, "width": s.width}
                for s in self.state_inputs
            ],
            "outputs": [o.to_dict() for o in self.outputs],
            "sequence_input": self.sequence_input,
            "lengths_input": self.lengths_input,
            "lengths_datatype": self.lengths_datatype,
            "time_major": self.time_major,
            "probs_output": self.probs_output,
            "logits_output": self.logits_output,
            "max_batch_size": self.max_batch_size,
            # Already JSON values: decode_metadata made them from JSON text or kept the string.
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """The spec ``to_dict`` gave (after a JSON round trip too); ``KeyError`` or
        ``TypeError`` when a field is missing or of the wrong kind."""

        def optional(key: str) -> str | None:
            return None if data[key] is None else str(data[key])

        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            input_size=int(data["input_size"]),
            labels=[str(label) for label in data["labels"]],
            state_inputs=[
                StateInput(str(s["name"]), str(s["output"]), int(s["directions"]), int(s["width"]))
                for s in data["state_inputs"]
            ],
            outputs=[OutputSpec.from_dict(o) for o in data["outputs"]],
            sequence_input=str(data["sequence_input"]),
            lengths_input=optional("lengths_input"),
            lengths_datatype=str(data["lengths_datatype"]),
            time_major=bool(data["time_major"]),
            probs_output=optional("probs_output"),
            logits_output=optional("logits_output"),
            max_batch_size=None if data["max_batch_size"] is None else int(data["max_batch_size"]),
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
