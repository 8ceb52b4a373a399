"""A request's place in a stream (the V2 sequence extension): which stream, whether it starts
or ends it. Read by both wire formats and carried to the engine, whose state store
(``service.engine.streams``) holds each stream's LSTM state between chunks.

This module imports only ``service.errors`` (the codec processes import it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.errors import InvalidInput


@dataclass(frozen=True)
class StreamChunk:
    """One chunk of stream ``sequence_id`` (a uint64 id as its decimal text, or a string)."""

    sequence_id: str
    start: bool = False
    end: bool = False


def stream_chunk(sequence_id: Any, start: Any, end: Any, where: str) -> StreamChunk | None:
    """The chunk that ``sequence_id``/``sequence_start``/``sequence_end`` describe, or None for
    a request outside any stream (no id, or Triton's 0 or ""); 422 naming the field otherwise."""
    for flag, value in (("sequence_start", start), ("sequence_end", end)):
        if value is not None and not isinstance(value, bool):
            raise InvalidInput(f"{where}{flag} must be a boolean, got {value!r}")
    if sequence_id is None or sequence_id == 0 or sequence_id == "":
        if start or end:
            raise InvalidInput(f"{where}sequence_start and sequence_end need a sequence_id")
        return None
    if isinstance(sequence_id, bool) or not isinstance(sequence_id, int | str):
        raise InvalidInput(
            f"{where}sequence_id must be an unsigned integer or a string, got {sequence_id!r}"
        )
    if isinstance(sequence_id, int) and not 0 < sequence_id < 2**64:
        raise InvalidInput(f"{where}sequence_id must be a uint64, got {sequence_id}")
    if isinstance(sequence_id, str) and len(sequence_id) > 256:
        raise InvalidInput(f"{where}sequence_id is longer than 256 characters")
    return StreamChunk(str(sequence_id), bool(start), bool(end))


def check_streamable(
    chunk: StreamChunk, model: str, sequences: int, directions: set[int], has_states: bool
) -> None:
    """422 unless a stream's chunk can run: one sequence, a model that carries its state
    forward (unidirectional, with state inputs), initial states only where a stream starts."""
    if not directions:
        raise InvalidInput(f"model {model} has no state inputs: it cannot run a stream")
    if directions != {1}:
        raise InvalidInput(
            f"model {model} is bidirectional: it cannot stream, its backward direction needs "
            "the whole sequence (send the whole sequence in one request)"
        )
    if sequences != 1:
        raise InvalidInput(f"a stream's chunk holds one sequence, this request {sequences}")
    if has_states and not chunk.start:
        raise InvalidInput(
            "initial states are taken only with sequence_start: a stream's later chunks go on "
            "from the state the server holds"
        )
