"""Which input of a graph is the sequence and which its lengths, and which outputs classify:
from ``config.pbtxt`` and the model's metadata where they say, otherwise from dtypes and ranks.

Standard library only, over descriptions (``name``, ``type``, ``shape``, as ONNX Runtime's
``NodeArg`` has them), so every rule is tested without a model. The output axes are found by
running the model (``contract.sessions.probe_outputs``), not here.

Shapes: ``B`` batch, ``T`` time, ``F`` features, ``C`` classes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from contract.model_config import (
    HINT_KEYS,
    LENGTHS_INPUT,
    LOGITS_OUTPUT,
    ONNX_TYPES,
    PROBABILITIES_OUTPUT,
    SEQUENCE_INPUT,
    SEQUENCE_LAYOUT,
    ModelConfig,
    TensorConfig,
)
from contract.names import LOGITS, PROBS
from contract.spec import ContractError

log = logging.getLogger(__name__)

FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")
"""Sequence inputs the service feeds (requests arrive as FP32 and are cast)."""
LENGTH_TYPES = {"tensor(int32)": "INT32", "tensor(int64)": "INT64"}
NO_LENGTHS = "none"
"""``lengths_input`` of a model that has no lengths input."""
LAYOUTS = {"batch_major": False, "time_major": True}

_EXPORT_HINT = (
    "export it with that axis dynamic (torch.onnx.export(..., dynamic_axes={NAME: {0: 'batch', "
    "1: 'time'}}) for a batch-major input)"
)


class Described(Protocol):
    """A graph input or output as ONNX Runtime describes it (``NodeArg``)."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def shape(self) -> Sequence[object]: ...


@dataclass(frozen=True)
class Hints:
    """What the configuration and the metadata say about the graph; None where silent."""

    sequence_input: str | None = None
    lengths_input: str | None = None
    """A name, or ``NO_LENGTHS``."""
    time_major: bool | None = None
    probs_output: str | None = None
    logits_output: str | None = None
    labels: list[str] | None = None
    max_batch_size: int | None = None
    inputs: dict[str, TensorConfig] = field(default_factory=dict)
    batched: bool = False
    """The configuration leaves the batch axis out of ``dims`` (``max_batch_size > 0``)."""

    @classmethod
    def of(
        cls, config: ModelConfig | None, metadata: Mapping[str, str], config_dir: Path | None
    ) -> Hints:
        """The hints of ``config`` (its ``parameters``, ``label_filename``, ``max_batch_size``)
        over those of the metadata (the same keys, ``model_config.HINT_KEYS``, and ``labels``, a
        JSON list)."""
        said = {key: metadata[key] for key in HINT_KEYS if key in metadata}
        labels = _metadata_labels(metadata.get("labels"))
        max_batch = None
        if config is not None:
            said.update((k, v) for k, v in config.parameters.items() if k in HINT_KEYS)
            max_batch = config.max_batch_size if config.max_batch_size > 0 else 1
            labelled = [t for t in config.outputs if t.label_filename]
            if labelled and config_dir is not None:
                labels = _label_file(config_dir / str(labelled[0].label_filename))
                if LOGITS_OUTPUT not in said and PROBABILITIES_OUTPUT not in said:
                    # Triton's classification reads scores from the labelled output; named
                    # by nothing else, they are taken for probabilities, so argmax is the class.
                    said[PROBABILITIES_OUTPUT] = labelled[0].name
        layout = said.get(SEQUENCE_LAYOUT)
        if layout is not None and layout not in LAYOUTS:
            raise ContractError(
                f"{SEQUENCE_LAYOUT} must be one of {sorted(LAYOUTS)}, got {layout!r}"
            )
        return cls(
            sequence_input=said.get(SEQUENCE_INPUT) or None,
            lengths_input=said.get(LENGTHS_INPUT) or None,
            time_major=None if layout is None else LAYOUTS[layout],
            probs_output=said.get(PROBABILITIES_OUTPUT) or None,
            logits_output=said.get(LOGITS_OUTPUT) or None,
            labels=labels,
            max_batch_size=max_batch,
            inputs={t.name: t for t in config.inputs} if config else {},
            batched=config is not None and config.max_batch_size > 0,
        )


def _metadata_labels(text: str | None) -> list[str] | None:
    if not text:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, list):
        log.warning("metadata 'labels' is not a JSON list; the classes are numbered instead")
        return None
    return [str(label) for label in parsed]


def _label_file(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line]
    except OSError as error:
        raise ContractError(f"label_filename {path.name}: {error}") from None


@dataclass(frozen=True)
class Signature:
    """The roles of a graph's inputs and outputs, and how each was decided."""

    sequence_input: str
    sequence_type: str
    """ORT's type string of the sequence input (``tensor(float)``...)."""
    input_size: int
    """``F``."""
    lengths_input: str | None
    lengths_datatype: str
    time_major: bool
    probs_output: str | None
    logits_output: str | None
    reasons: list[str]
    """How each role was decided, for the log."""


def _dims(arg: Described) -> list[object]:
    return list(arg.shape)


def _declared(arg: Described, hints: Hints) -> list[object]:
    """``arg``'s shape, fixed where either the graph or the configuration fixes it; a
    configuration that contradicts the graph is a ``ContractError``."""
    dims = _dims(arg)
    tensor = hints.inputs.get(arg.name)
    if tensor is None:
        return dims
    if tensor.data_type is not None and ONNX_TYPES[tensor.data_type] != arg.type:
        raise ContractError(
            f"config.pbtxt gives input {arg.name!r} data_type {tensor.data_type}; the graph "
            f"takes {arg.type}"
        )
    said = tensor.whole_dims(hints.batched)
    if said is None or tensor.dims is None:
        return dims
    if len(said) != len(dims) and not (len(dims) == 1 and said == [-1, 1]):
        raise ContractError(
            f"config.pbtxt gives input {arg.name!r} dims {list(tensor.dims)} (max_batch_size "
            f"{'> 0' if hints.batched else '0'}); the graph's shape is {dims}"
        )
    merged: list[object] = []
    for graph_dim, config_dim in zip(dims, said, strict=False):
        if isinstance(graph_dim, int) and config_dim not in (-1, graph_dim):
            raise ContractError(
                f"config.pbtxt gives input {arg.name!r} dims {list(tensor.dims)}; the graph's "
                f"shape is {dims}"
            )
        merged.append(graph_dim if isinstance(graph_dim, int) else config_dim)
    return merged


def _choose(
    candidates: list[Described], named: str | None, inputs: dict[str, Described], role: str
) -> Described | None:
    if named is not None:
        if named not in inputs:
            raise ContractError(f"{role} is given as {named!r}, but the graph's inputs are "
                                f"{sorted(inputs)}")  # fmt: skip
        return inputs[named]
    if len(candidates) > 1:
        raise ContractError(
            f"inputs {[c.name for c in candidates]} could each be the {role}: name it with "
            f"the config.pbtxt parameter {SEQUENCE_INPUT if 'sequence' in role else LENGTHS_INPUT}"
        )
    return candidates[0] if candidates else None


def infer_signature(
    inputs: Sequence[Described], outputs: Sequence[Described], hints: Hints
) -> Signature:
    """The roles of ``inputs`` and ``outputs`` (``ContractError`` naming what cannot be served).

    The sequence: the input named by ``sequence_input``, else the one float input of rank 3.
    The lengths: the input named by ``lengths_input`` (``none``: there is none), else the one
    integer input of rank 1, else none (the model is then padding-sensitive). Any other input
    is refused: the service would not know what to feed it. The layout is batch-major unless
    ``sequence_layout`` says ``time_major``. The class outputs: those named by
    ``probabilities_output`` / ``logits_output``, else outputs named ``probs`` / ``logits``.
    """
    by_name = {arg.name: arg for arg in inputs}
    reasons = []
    floats = [a for a in inputs if a.type in FLOAT_TYPES and len(_dims(a)) == 3]
    sequence = _choose(floats, hints.sequence_input, by_name, "sequence input")
    if sequence is None:
        raise ContractError(
            f"no input can be the sequence: none is float of rank 3 ([B, T, F]); the graph "
            f"takes {[(a.name, a.type, _dims(a)) for a in inputs]}"
        )
    reasons.append(
        f"sequence input {sequence.name!r}: "
        + ("named by the configuration" if hints.sequence_input else "the one float rank-3 input")
    )
    if sequence.type not in FLOAT_TYPES or len(_dims(sequence)) != 3:
        raise ContractError(
            f"the sequence input {sequence.name!r} must be float of rank 3, got {sequence.type} "
            f"{_dims(sequence)}"
        )
    lengths: Described | None
    if hints.lengths_input == NO_LENGTHS:
        lengths = None
        reasons.append("no lengths input: the configuration says none")
    else:
        integers = [a for a in inputs if a.type in LENGTH_TYPES and len(_dims(a)) == 1]
        lengths = _choose(integers, hints.lengths_input, by_name, "lengths input")
        reasons.append(
            "no lengths input: none is an integer of rank 1"
            if lengths is None
            else f"lengths input {lengths.name!r}: "
            + ("named by the configuration" if hints.lengths_input else "the one int rank-1 input")
        )
    if lengths is not None and (lengths.type not in LENGTH_TYPES or len(_dims(lengths)) != 1):
        raise ContractError(
            f"the lengths input {lengths.name!r} must be int32 or int64 of rank 1, got "
            f"{lengths.type} {_dims(lengths)}"
        )
    others = [a.name for a in inputs if a not in (sequence, lengths)]
    if others:
        raise ContractError(
            f"the service feeds a model its sequence ({sequence.name!r}) and lengths"
            f"{f' ({lengths.name!r})' if lengths else ''} only; inputs {others} are neither. "
            "Make them optional (an initializer with a default) or leave them out of the export"
        )
    time_major = bool(hints.time_major)
    if time_major:
        reasons.append("time-major: the configuration says so")
    dims = _declared(sequence, hints)
    time_axis, batch_axis = (0, 1) if time_major else (1, 0)
    for axis, what in ((batch_axis, "batch"), (time_axis, "time")):
        size = dims[axis]
        if isinstance(size, int) and size > 0:
            raise ContractError(
                f"input {sequence.name!r} has a fixed {what} size {size} (shape {dims}): "
                "the service batches sequences of any length; "
                + _EXPORT_HINT.replace("NAME", repr(sequence.name))
            )
    features = dims[2]
    if not isinstance(features, int) or features <= 0:
        raise ContractError(
            f"the feature size F of {sequence.name!r} is not fixed (shape {dims}): give it in "
            "config.pbtxt (dims) or export the graph with a fixed last axis"
        )
    if lengths is not None:
        length_batch = _declared(lengths, hints)[0]
        if isinstance(length_batch, int) and length_batch > 0:
            raise ContractError(
                f"input {lengths.name!r} has a fixed batch size {length_batch}: "
                + _EXPORT_HINT.replace("NAME", repr(lengths.name))
            )
    output_names = {o.name for o in outputs}
    class_outputs = []
    for named, default, key in (
        (hints.probs_output, PROBS, PROBABILITIES_OUTPUT),
        (hints.logits_output, LOGITS, LOGITS_OUTPUT),
    ):
        if named is not None and named not in output_names:
            raise ContractError(
                f"{key} is given as {named!r}, but the graph's outputs are {sorted(output_names)}"
            )
        chosen = named or (default if default in output_names else None)
        if chosen is not None:
            reasons.append(f"{key.removesuffix('_output')} {chosen!r}")
        class_outputs.append(chosen)
    return Signature(
        sequence_input=sequence.name,
        sequence_type=sequence.type,
        input_size=features,
        lengths_input=lengths.name if lengths else None,
        lengths_datatype=LENGTH_TYPES[lengths.type] if lengths else "INT32",
        time_major=time_major,
        probs_output=class_outputs[0],
        logits_output=class_outputs[1],
        reasons=reasons,
    )
