"""Turning request bodies into validated arrays, or a 4xx naming the problem.

Only what passes here reaches the batcher. Shapes: ``B`` sequences, ``L`` steps of one, ``F``
features, ``C`` classes, ``D`` per-step output width, ``dirs`` directions, ``H_n`` width of
layer ``n``.

This module imports only numpy, orjson, ``contract.spec`` and ``service.errors``: its decoders and
encoders also run in the codec worker processes (``service.frontend.api.offload``), which must start
fast and stay small, so nothing here may import ONNX Runtime, FastAPI or the registry.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from contract.names import OUTPUTS
from contract.spec import ModelSpec, StateInput
from service.errors import InvalidInput, MalformedRequest, ResponseTooLarge
from service.streaming import StreamChunk, check_streamable, stream_chunk

if TYPE_CHECKING:
    from service.settings import Settings

_NUMERIC_KINDS = "fiu"

JSON_BYTES_PER_VALUE = 17
"""Most bytes one float32 takes in a JSON response, separator included (orjson writes the
shortest round-trip form: ``-4980097000000.0,``); response sizes are estimated with it."""
BINARY_BYTES_PER_VALUE = 4
"""FP32 in the binary tensor extension."""

_NON_JSON_NUMBER = re.compile(r"(?<![a-z])-?(nan|inf|infinity)(?![a-z])", re.IGNORECASE)


@dataclass(frozen=True)
class RequestRules:
    """What one request to one model may hold and ask for: the model's spec (shapes, states,
    labels) and the server's limits. Pickles without ONNX Runtime (``contract.spec`` is stdlib
    only), for the codec processes."""

    spec: ModelSpec
    max_sequences: int = 256
    max_length: int = 1000
    """Longest sequence, and longest padded length ``T`` of a V2 batch, in steps."""
    max_response_bytes: int = 64 * 1024 * 1024

    @classmethod
    def of(cls, spec: ModelSpec, settings: Settings) -> RequestRules:
        # The metadata (parity figures, checksums) rules nothing here, and the rules travel
        # with every request that a codec process decodes: it stays behind.
        return cls(
            spec=replace(spec, metadata={}),
            max_sequences=settings.max_sequences_per_request,
            max_length=settings.max_sequence_length,
            max_response_bytes=settings.max_response_bytes,
        )

    @property
    def model(self) -> str:
        return self.spec.name

    @property
    def input_size(self) -> int:
        """``F``."""
        return self.spec.input_size

    @property
    def num_classes(self) -> int:
        """``C``."""
        return self.spec.num_classes

    @property
    def labels(self) -> list[str]:
        return self.spec.labels

    @property
    def states(self) -> list[StateInput]:
        """The initial-state inputs ``(dirs, B, H_n)``, sorted by name."""
        return self.spec.state_inputs

    @property
    def output_shapes(self) -> dict[str, list[int]]:
        """Every output's shape, -1 where dynamic (the batch axis, and the time axis of
        ``outputs``)."""
        return self.spec.output_shapes

    @property
    def layers(self) -> int:
        return self.spec.layers

    @property
    def output_names(self) -> list[str]:
        return list(self.spec.output_names)

    def output_values(self, name: str, batch: int, steps: int) -> int:
        """Values in output ``name`` for ``batch`` sequences padded to ``steps``: its batch axis
        counts ``batch``, its time axis (if any) ``steps`` (``contract.spec.OutputSpec``)."""
        output = self.spec.output(name)
        count = 1
        for axis, size in enumerate(output.shape):
            if axis == output.batch_axis:
                count *= batch
            elif axis == output.time_axis:
                count *= steps
            elif size > 0:
                count *= size
        return count


# -- JSON and numbers ----------------------------------------------------------------------------
def decode_json(body: bytes, what: str = "body") -> Any:
    """``body`` parsed by orjson, or 400. NaN and Infinity get their own message: JSON has no
    such numbers, and the model rejects non-finite input anyway, so there is no way (or need) to
    send them."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        start, end = max(0, error.pos - 1), error.pos + 9  # pos counts characters
        near = (
            body[start:end].decode("ascii")
            if body.isascii()
            else body.decode("utf-8", "replace")[start:end]
        )
        if _NON_JSON_NUMBER.search(near):
            raise MalformedRequest(
                f"{what} is not valid JSON: NaN and Infinity are not JSON numbers (at char "
                f"{error.pos}); non-finite values cannot be sent, and the model would reject "
                "them anyway"
            ) from None
        raise MalformedRequest(f"{what} is not valid JSON: {error}") from None


def may_hold_booleans(json_text: bytes) -> bool:
    """False when the JSON text has no ``true``/``false`` token at all, so no value decoded from
    it is a boolean (a token inside a string only makes this say True needlessly)."""
    return b"true" in json_text or b"false" in json_text


def _flattened(value: Any, depth: int) -> Iterable[Any]:
    """The leaves of a regular nested list ``depth`` deep, in row-major order."""
    leaves: Iterable[Any] = iter([value])
    for _ in range(depth):
        leaves = itertools.chain.from_iterable(leaves)
    return leaves


def _holds_booleans(value: Any, array: np.ndarray) -> bool:
    """Whether the decoded JSON ``value``, converted to the numeric ``array``, held booleans
    among its numbers (numpy turns them into 1 and 0 silently). Only values equal to 0 or 1 can
    have been booleans: with none, this is one vectorised comparison (~2 ns a value); with a
    few, each is looked up; with many (zero padding), the type of every value is (~27 ns a
    value, measured)."""
    candidates = np.flatnonzero((array == 0) | (array == 1))
    if len(candidates) == 0:
        return False
    if len(candidates) * 16 > array.size:
        return bool in set(map(type, _flattened(value, array.ndim)))
    axes = [axis.tolist() for axis in np.unravel_index(candidates, array.shape)]
    for index in zip(*axes, strict=True):
        item = value
        for i in index:
            item = item[i]
        if isinstance(item, bool):
            return True
    return False


def numeric_array(value: Any, where: str, booleans_possible: bool = True) -> np.ndarray:
    """``value`` (nested lists of numbers) as an array; ragged or non-numeric input, and
    booleans anywhere, are a 422. ``booleans_possible=False`` (see ``may_hold_booleans``) skips
    the boolean scan."""
    try:
        array = np.array(value)
    except (ValueError, TypeError):
        raise InvalidInput(
            f"{where} is ragged: every row must have the same number of values"
        ) from None
    if array.dtype.kind == "b":
        raise InvalidInput(f"{where} holds booleans; expected numbers")
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise InvalidInput(
            f"{where} holds non-numeric values (or integers beyond 64 bits); expected numbers"
        )
    if booleans_possible and _holds_booleans(value, array):
        raise InvalidInput(f"{where} mixes booleans with numbers; expected numbers only")
    return array


def as_integers(array: np.ndarray, dtype: np.dtype[Any], where: str, datatype: str) -> np.ndarray:
    """A numeric ``array`` cast to the integer ``dtype``, refusing what the cast would change:
    non-integers, and integers out of the type's range (which ``astype`` wraps: 2**32 + 1 would
    become 1)."""
    if array.dtype.kind == "f":
        raise InvalidInput(f"{where} is {datatype} but its data holds non-integers")
    if array.size:
        info = np.iinfo(dtype)
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            raise InvalidInput(
                f"{where} holds {low if low < info.min else high}, out of the {datatype} range "
                f"[{info.min}, {info.max}]"
            )
    return array.astype(dtype, copy=False)


def require_finite(array: np.ndarray, where: str) -> None:
    if not np.isfinite(array).all():
        raise InvalidInput(f"{where} holds NaN or infinite values (or numbers beyond float32)")


def check_sequence(array: np.ndarray, rules: RequestRules, where: str) -> np.ndarray:
    """A sequence ``(L, F)`` as C-contiguous float32 with ``1 <= L <= max_length``, all finite."""
    if array.ndim != 2 or array.shape[1] != rules.input_size:
        raise InvalidInput(
            f"{where} must be a list of steps of {rules.input_size} features each, got shape "
            f"{list(array.shape)}"
        )
    if array.shape[0] == 0:
        raise InvalidInput(f"{where} is empty: a sequence needs at least one step")
    if array.shape[0] > rules.max_length:
        raise InvalidInput(f"{where} has {array.shape[0]} steps; the limit is {rules.max_length}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, rejected just below
        converted = np.ascontiguousarray(array, dtype=np.float32)
    require_finite(converted, where)
    return converted


def check_count(count: int, rules: RequestRules) -> None:
    if count == 0:
        raise InvalidInput("no sequences given: send at least one")
    if count > rules.max_sequences:
        raise InvalidInput(f"{count} sequences in one request; the limit is {rules.max_sequences}")


def check_response_size(estimate: int, rules: RequestRules, hint: str) -> None:
    """422 ``response_too_large`` before any compute when the answer would exceed the limit."""
    if estimate > rules.max_response_bytes:
        raise ResponseTooLarge(
            f"the response would take about {estimate} bytes; the limit is "
            f"{rules.max_response_bytes} (max_response_bytes): {hint}"
        )


def encode_json(content: Any) -> bytes:
    """``content`` as JSON (numpy arrays allowed)."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


# -- the simple JSON API (v1) --------------------------------------------------------------------
RETURN_FIELDS = ("label", "probabilities", "logits", "outputs", "final_state", "tensors")
"""What a v1 request may ask for per sequence: the class and its index, the probabilities (the
model's, or the softmax of its logits), the logits, the contract's per-step ``outputs``, the
final states, and ``tensors``: every output of the model by its own name."""
DEFAULT_RETURN = ("label", "probabilities")
"""For a model with a class output; a model without one returns ``tensors``."""


def default_return(spec: ModelSpec) -> tuple[str, ...]:
    return DEFAULT_RETURN if spec.class_output is not None else ("tensors",)


def return_outputs(field_name: str, spec: ModelSpec) -> tuple[str, ...]:
    """The model outputs v1's ``field_name`` is made of; 422 naming what the model lacks."""
    needed: tuple[str | None, ...]
    if field_name == "label":
        needed = (spec.class_output,)
    elif field_name == "probabilities":
        needed = (spec.probs_output or spec.logits_output,)
    elif field_name == "logits":
        needed = (spec.logits_output,)
    elif field_name == "outputs":
        needed = (OUTPUTS if OUTPUTS in spec.output_names else None,)
    elif field_name == "final_state":
        needed = tuple(s.output for s in spec.state_inputs) or (None,)
    else:
        needed = tuple(spec.output_names)
    if None in needed:
        raise InvalidInput(
            f"model {spec.name} cannot return {field_name!r}: it has no "
            + {
                "label": "class output (probabilities or logits)",
                "probabilities": "class output (probabilities or logits)",
                "logits": "logits output",
                "outputs": "per-step output 'outputs'",
                "final_state": "state outputs",
            }[field_name]
            + f"; ask for 'tensors' (its outputs {spec.output_names} by name)"
        )
    return tuple(name for name in needed if name is not None)


_PREDICT_FIELDS = {
    "sequences",
    "return",
    "initial_states",
    "sequence_id",
    "sequence_start",
    "sequence_end",
}


@dataclass(frozen=True)
class PredictInput:
    """A validated v1 request: ``sequences[b]`` ``(L_b, F)`` float32, their initial states,
    what to return, the model outputs that needs, and the response's estimated size."""

    sequences: list[np.ndarray]
    states: list[dict[str, np.ndarray] | None]
    wanted: tuple[str, ...]
    output_names: frozenset[str]
    response_bytes: int
    stream: StreamChunk | None = None
    """The stream this request is a chunk of (``sequence_id``), or None."""


def wanted_fields(raw: Any, spec: ModelSpec) -> tuple[str, ...]:
    if raw is None:
        return default_return(spec)
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(r, str) and r in RETURN_FIELDS for r in raw)
    ):
        raise InvalidInput(f"'return' must be a non-empty list drawn from {sorted(RETURN_FIELDS)}")
    return tuple(raw)


def predict_response_bytes(
    lengths: Sequence[int], wanted: tuple[str, ...], rules: RequestRules
) -> int:
    """An upper bound on the v1 response's size (numbers at ``JSON_BYTES_PER_VALUE``)."""
    per_value = JSON_BYTES_PER_VALUE
    per_sequence = 64
    if "label" in wanted:
        per_sequence += max((len(label) for label in rules.labels), default=0) * 6 + 40
    if "probabilities" in wanted:
        per_sequence += rules.num_classes * per_value + 20
    if "logits" in wanted:
        per_sequence += rules.num_classes * per_value + 20
    if "final_state" in wanted:
        per_sequence += sum(s.directions * (s.width * per_value + 2) + 8 for s in rules.states)
    size = 256 + sum(max(len(label), 1) * 6 + 3 for label in rules.labels)
    size += per_sequence * len(lengths)
    per_step = []
    if "outputs" in wanted:
        per_step.append(OUTPUTS)
    if "tensors" in wanted:
        per_step.extend(rules.output_names)
    for name in per_step:
        # A per-step output grows with each length; any other is the same size for each.
        size += sum(
            rules.output_values(name, 1, length) * (per_value + 1) + 32 for length in lengths
        )
    return size


def decode_predict_request(body: bytes, rules: RequestRules) -> PredictInput:
    """A v1 body ``{"sequences": [[[f, ...], ...], ...], "return": [...], "initial_states":
    [...]}`` decoded and validated; what would exceed a limit is refused before it is built."""
    raw = decode_json(body)
    if not isinstance(raw, dict) or "sequences" not in raw:
        raise InvalidInput('the body must be a JSON object with "sequences"')
    unknown = set(raw) - _PREDICT_FIELDS
    if unknown:
        raise InvalidInput(f"unknown fields: {sorted(unknown)}")
    wanted = wanted_fields(raw.get("return"), rules.spec)
    names = {n for w in wanted for n in return_outputs(w, rules.spec)}
    raw_sequences = _sequence_lists(raw["sequences"], rules)
    response_bytes = predict_response_bytes([len(s) for s in raw_sequences], wanted, rules)
    check_response_size(
        response_bytes, rules, "send fewer or shorter sequences, or leave 'outputs' out of 'return'"
    )
    booleans = may_hold_booleans(body)
    sequences = [
        check_sequence(numeric_array(s, f"sequences[{k}]", booleans), rules, f"sequences[{k}]")
        for k, s in enumerate(raw_sequences)
    ]
    states = parse_json_initial_states(raw.get("initial_states"), len(sequences), rules, booleans)
    stream = stream_chunk(
        raw.get("sequence_id"), raw.get("sequence_start"), raw.get("sequence_end"), ""
    )
    if stream is not None:
        check_stream(stream, rules, len(sequences), any(s is not None for s in states))
    return PredictInput(sequences, states, wanted, frozenset(names), response_bytes, stream)


def check_stream(stream: StreamChunk, rules: RequestRules, sequences: int, states: bool) -> None:
    """422 unless ``rules``' model can run this chunk (``service.streaming.check_streamable``)."""
    directions = {s.directions for s in rules.states}
    check_streamable(stream, rules.model, sequences, directions, states)


def _sequence_lists(raw: Any, rules: RequestRules) -> list[list[Any]]:
    """The sequences as decoded lists, their count and lengths checked (nothing built yet)."""
    if not isinstance(raw, list):
        raise InvalidInput("'sequences' must be a list of sequences (lists of steps)")
    check_count(len(raw), rules)
    for k, sequence in enumerate(raw):
        where = f"sequences[{k}]"
        if not isinstance(sequence, list):
            raise InvalidInput(f"{where} must be a list of steps")
        if not sequence:
            raise InvalidInput(f"{where} is empty: a sequence needs at least one step")
        if len(sequence) > rules.max_length:
            raise InvalidInput(
                f"{where} has {len(sequence)} steps; the limit is {rules.max_length}"
            )
    return raw


def parse_json_initial_states(
    raw: Any, count: int, rules: RequestRules, booleans_possible: bool = True
) -> list[dict[str, np.ndarray] | None]:
    """Per sequence: None (zeros) or one ``{"c": (dirs, H_n), "h": (dirs, H_n)}`` per layer."""
    if raw is None:
        return [None] * count
    if not rules.states:
        raise InvalidInput(f"model {rules.model} does not accept initial states")
    if not isinstance(raw, list) or len(raw) != count:
        raise InvalidInput(f"'initial_states' must be a list with one entry per sequence ({count})")
    widths = {s.name: s for s in rules.states}
    states: list[dict[str, np.ndarray] | None] = []
    for k, layers in enumerate(raw):
        if layers is None:
            states.append(None)
            continue
        if not isinstance(layers, list) or len(layers) != rules.layers:
            raise InvalidInput(
                f"initial_states[{k}] must list {rules.layers} layers of {{'c': ..., 'h': ...}}"
            )
        state: dict[str, np.ndarray] = {}
        for n, layer in enumerate(layers):
            if not isinstance(layer, dict) or set(layer) != {"c", "h"}:
                raise InvalidInput(f"initial_states[{k}][{n}] must be an object with 'c' and 'h'")
            for part in ("c", "h"):
                name = f"initial_{part}_{n}"
                where = f"initial_states[{k}][{n}].{part}"
                expected = (widths[name].directions, widths[name].width)
                array = numeric_array(layer[part], where, booleans_possible)
                if array.shape != expected:
                    raise InvalidInput(
                        f"{where} must have shape {list(expected)}, got {list(array.shape)}"
                    )
                with np.errstate(over="ignore"):
                    array = array.astype(np.float32)
                require_finite(array, where)
                state[name] = array
        states.append(state)
    return states
