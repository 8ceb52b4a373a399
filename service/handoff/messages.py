"""The hand-off's messages, typed: what a frontend asks of an engine and what it answers.

Frontend → engine: ``Submit`` (a request's validated sequences), ``Cancel`` (requests whose
client left or whose deadline passed: their sequences are dropped before they run), ``Ping``
(liveness and load), ``Describe`` (the models the engine serves). Engine → frontend: ``Result``
or ``Failure`` per submitted request, ``Pong``, ``Description``.

Shapes: ``L`` steps of a sequence, ``F`` features, ``dirs`` directions, ``H_n`` width of
layer ``n``. Deadlines are ``time.monotonic()`` seconds: one clock for every process of a
machine (Linux's CLOCK_MONOTONIC), which is where engine and frontends run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from service.errors import ServiceError
from service.handoff.frames import FrameError, Header, pack, unpack
from service.streaming import StreamChunk

Frames = list[Any]


@dataclass
class Submit:
    """Run ``sequences`` (each ``(L, F)``) of model ``model``/``version`` before ``deadline``;
    ``states[b]`` maps state input names to ``(dirs, H_n)`` arrays, or is None for zeros."""

    id: int
    model: str
    version: str
    deadline: float
    outputs: list[str]
    sequences: list[np.ndarray]
    states: list[Mapping[str, np.ndarray] | None]
    stream: StreamChunk | None = None
    """The stream the one sequence is the next chunk of, or None."""


@dataclass
class Cancel:
    ids: list[int]


@dataclass
class Ping:
    pass


@dataclass
class Describe:
    pass


@dataclass
class Result:
    """Per sequence of request ``id``, its outputs by name."""

    id: int
    results: list[dict[str, np.ndarray]]


@dataclass
class Failure:
    """Request ``id`` failed with a ``ServiceError`` (its type, message and headers)."""

    id: int
    error_type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, request_id: int, error: ServiceError) -> Failure:
        return cls(request_id, error.error_type, error.message, dict(error.headers))

    def error(self) -> ServiceError:
        """The error again, of its own class (so it keeps its HTTP status)."""
        kind = _ERROR_TYPES.get(self.error_type, ServiceError)
        return kind(self.message, dict(self.headers))


@dataclass
class ModelStatus:
    """One model version's state in an engine, as ``Pong`` reports it."""

    name: str
    version: str
    ready: bool
    queue_depth: int


@dataclass
class Pong:
    engine: str
    """The engine's incarnation: another value means the engine restarted."""
    models: list[ModelStatus]
    draining: bool = False


@dataclass
class Description:
    """The models of engine ``engine``: per version its spec (``ModelSpec`` as a dict, None if
    it failed to load), provider and load error."""

    engine: str
    models: list[dict[str, Any]]


Message = Submit | Cancel | Ping | Describe | Result | Failure | Pong | Description


def _all_error_types() -> dict[str, type[ServiceError]]:
    found: dict[str, type[ServiceError]] = {}
    pending: list[type[ServiceError]] = [ServiceError]
    while pending:
        kind = pending.pop()
        found.setdefault(kind.error_type, kind)
        pending.extend(kind.__subclasses__())
    return found


_ERROR_TYPES = _all_error_types()


def encode(messages: Sequence[Message]) -> Frames:
    """The frames of one ZeroMQ message carrying ``messages`` (for
    ``send_multipart(copy=False)``)."""
    return pack([_part(message) for message in messages])


def decode(frames: Sequence[zmq.Frame | bytes]) -> list[Message]:
    """The messages in ``frames`` (arrays are read-only views of the frames' memory); a
    message that does not follow the format, whatever is wrong with it, is a ``FrameError``."""
    try:
        return [_message(header, arrays) for header, arrays in unpack(frames)]
    except FrameError:
        raise
    except Exception as error:  # a peer's bug or version must not end the receiving loop
        raise FrameError(f"malformed message: {error!r}") from error


def _part(message: Message) -> tuple[Header, list[np.ndarray]]:
    match message:
        case Submit():
            arrays: list[np.ndarray] = []
            state_names: list[list[str] | None] = []
            for sequence, state in zip(message.sequences, message.states, strict=True):
                arrays.append(sequence)
                if state is None:
                    state_names.append(None)
                else:
                    state_names.append(list(state))
                    arrays.extend(state.values())
            header = {
                "op": "submit",
                "id": message.id,
                "model": message.model,
                "version": message.version,
                "deadline": message.deadline,
                "outputs": message.outputs,
                "states": state_names,
            }
            if message.stream is not None:
                chunk = message.stream
                header["stream"] = [chunk.sequence_id, chunk.start, chunk.end]
            return header, arrays
        case Result():
            names = [list(result) for result in message.results]
            values = [array for result in message.results for array in result.values()]
            return {"op": "result", "id": message.id, "outputs": names}, values
        case Cancel():
            return {"op": "cancel", "ids": message.ids}, []
        case Ping():
            return {"op": "ping"}, []
        case Describe():
            return {"op": "describe"}, []
        case Failure():
            header = {
                "op": "failure",
                "id": message.id,
                "error_type": message.error_type,
                "message": message.message,
                "headers": message.headers,
            }
            return header, []
        case Pong():
            models = [[m.name, m.version, m.ready, m.queue_depth] for m in message.models]
            header = {
                "op": "pong",
                "engine": message.engine,
                "models": models,
                "draining": message.draining,
            }
            return header, []
        case Description():
            return {"op": "description", "engine": message.engine, "models": message.models}, []
    raise TypeError(f"not a hand-off message: {message!r}")


def _message(header: Header, arrays: list[np.ndarray]) -> Message:
    op = header.get("op")
    try:
        if op == "submit":
            sequences: list[np.ndarray] = []
            states: list[Mapping[str, np.ndarray] | None] = []
            position = 0
            for names in header["states"]:
                sequences.append(arrays[position])
                position += 1
                if names is None:
                    states.append(None)
                else:
                    states.append(
                        dict(zip(names, arrays[position : position + len(names)], strict=True))
                    )
                    position += len(names)
            if position != len(arrays):
                raise FrameError(f"submit carries {len(arrays)} arrays, its header {position}")
            stream = header.get("stream")
            return Submit(
                int(header["id"]),
                str(header["model"]),
                str(header["version"]),
                float(header["deadline"]),
                list(header["outputs"]),
                sequences,
                states,
                StreamChunk(str(stream[0]), bool(stream[1]), bool(stream[2])) if stream else None,
            )
        if op == "result":
            results, position = [], 0
            for names in header["outputs"]:
                results.append(
                    dict(zip(names, arrays[position : position + len(names)], strict=True))
                )
                position += len(names)
            if position != len(arrays):
                raise FrameError(f"result carries {len(arrays)} arrays, its header {position}")
            return Result(int(header["id"]), results)
        if op == "cancel":
            return Cancel([int(i) for i in header["ids"]])
        if op == "ping":
            return Ping()
        if op == "describe":
            return Describe()
        if op == "failure":
            return Failure(
                int(header["id"]),
                str(header["error_type"]),
                str(header["message"]),
                dict(header["headers"]),
            )
        if op == "pong":
            models = [
                ModelStatus(str(n), str(v), bool(r), int(d)) for n, v, r, d in header["models"]
            ]
            return Pong(str(header["engine"]), models, bool(header["draining"]))
        if op == "description":
            return Description(str(header["engine"]), list(header["models"]))
    except (KeyError, TypeError, ValueError) as error:
        raise FrameError(f"malformed {op} message: {error!r}") from error
    raise FrameError(f"unknown message op {op!r}")
