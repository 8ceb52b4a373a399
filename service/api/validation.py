"""Turning decoded request values into validated arrays, or a 4xx naming the problem.

Only what passes here reaches the batcher. Shapes: ``L`` steps, ``F`` features, ``dirs``
directions, ``H_n`` width of layer ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import InvalidInput
from service.runtime.session import ModelSpec

_NUMERIC_KINDS = "fiu"


@dataclass(frozen=True)
class Limits:
    max_sequences: int
    max_length: int


def numeric_array(value: Any, where: str) -> np.ndarray:
    """``value`` (nested lists of numbers) as an array; ragged or non-numeric input is a 422."""
    try:
        array = np.array(value)
    except (ValueError, TypeError):
        raise InvalidInput(
            f"{where} is ragged: every row must have the same number of values"
        ) from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        kind = "booleans" if array.dtype.kind == "b" else "non-numeric values"
        raise InvalidInput(f"{where} holds {kind}; expected numbers")
    return array


def require_finite(array: np.ndarray, where: str) -> None:
    if not np.isfinite(array).all():
        raise InvalidInput(f"{where} holds NaN or infinite values (or numbers beyond float32)")


def check_sequence(array: np.ndarray, spec: ModelSpec, limits: Limits, where: str) -> np.ndarray:
    """A sequence ``(L, F)`` as C-contiguous float32 with ``1 <= L <= max_length``, all finite."""
    if array.ndim != 2 or array.shape[1] != spec.input_size:
        raise InvalidInput(
            f"{where} must be a list of steps of {spec.input_size} features each, got shape "
            f"{list(array.shape)}"
        )
    if array.shape[0] == 0:
        raise InvalidInput(f"{where} is empty: a sequence needs at least one step")
    if array.shape[0] > limits.max_length:
        raise InvalidInput(f"{where} has {array.shape[0]} steps; the limit is {limits.max_length}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, rejected just below
        converted = np.ascontiguousarray(array, dtype=np.float32)
    require_finite(converted, where)
    return converted


def check_count(count: int, limits: Limits) -> None:
    if count == 0:
        raise InvalidInput("no sequences given: send at least one")
    if count > limits.max_sequences:
        raise InvalidInput(f"{count} sequences in one request; the limit is {limits.max_sequences}")


def parse_json_sequences(raw: Any, spec: ModelSpec, limits: Limits) -> list[np.ndarray]:
    """``[[[f, ...], ...], ...]``: a list of sequences, each a list of steps of ``F`` numbers."""
    if not isinstance(raw, list):
        raise InvalidInput("'sequences' must be a list of sequences (lists of steps)")
    check_count(len(raw), limits)
    sequences = []
    for k, sequence in enumerate(raw):
        where = f"sequences[{k}]"
        if not isinstance(sequence, list):
            raise InvalidInput(f"{where} must be a list of steps")
        if not sequence:
            raise InvalidInput(f"{where} is empty: a sequence needs at least one step")
        if len(sequence) > limits.max_length:
            raise InvalidInput(
                f"{where} has {len(sequence)} steps; the limit is {limits.max_length}"
            )
        sequences.append(check_sequence(numeric_array(sequence, where), spec, limits, where))
    return sequences


def parse_json_initial_states(
    raw: Any, count: int, spec: ModelSpec
) -> list[dict[str, np.ndarray] | None]:
    """Per sequence: None (zeros) or one ``{"c": (dirs, H_n), "h": (dirs, H_n)}`` per layer."""
    if raw is None:
        return [None] * count
    if not spec.state_inputs:
        raise InvalidInput(f"model {spec.name} does not accept initial states")
    if not isinstance(raw, list) or len(raw) != count:
        raise InvalidInput(f"'initial_states' must be a list with one entry per sequence ({count})")
    widths = {s.name: s for s in spec.state_inputs}
    states: list[dict[str, np.ndarray] | None] = []
    for k, layers in enumerate(raw):
        if layers is None:
            states.append(None)
            continue
        if not isinstance(layers, list) or len(layers) != spec.layers:
            raise InvalidInput(
                f"initial_states[{k}] must list {spec.layers} layers of {{'c': ..., 'h': ...}}"
            )
        state: dict[str, np.ndarray] = {}
        for n, layer in enumerate(layers):
            if not isinstance(layer, dict) or set(layer) != {"c", "h"}:
                raise InvalidInput(f"initial_states[{k}][{n}] must be an object with 'c' and 'h'")
            for part in ("c", "h"):
                name = f"initial_{part}_{n}"
                where = f"initial_states[{k}][{n}].{part}"
                expected = (widths[name].directions, widths[name].width)
                array = numeric_array(layer[part], where)
                if array.shape != expected:
                    raise InvalidInput(
                        f"{where} must have shape {list(expected)}, got {list(array.shape)}"
                    )
                array = array.astype(np.float32)
                require_finite(array, where)
                state[name] = array
        states.append(state)
    return states
