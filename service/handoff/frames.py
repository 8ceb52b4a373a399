"""One ZeroMQ message on the wire: a JSON list of headers, then one raw frame per array.

A message carries every hand-off message bound for one peer in one event-loop iteration (the
``Outbox`` gathers them): sending one ZeroMQ message per request costs ~120 µs of CPU a round
trip (wake-ups of the I/O threads, syscalls), a message of many requests a fraction of that
per request (measured: ``bench.handoff``). Each header names its arrays' dtypes and shapes
(``"arrays": [[dtype, shape], ...]``), in frame order, so arrays cross as their bytes: no
per-element conversion, no pickling. Frames are sent without copying (pyzmq copies only frames
under its ``copy_threshold``, where a copy is cheaper than pinning the buffer) and read back
with ``np.frombuffer`` over the received frame: a receiver's arrays are read-only views of the
message's memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import zmq

ALLOWED_DTYPES = frozenset({"<f4", "<i4", "<i8", "<f8", "|b1"})
"""What crosses, as numpy's dtype strings (``dtype.str``, ~15x cheaper to read than
``dtype.name``): the contract's tensors are FP32 (inputs, states, outputs) and INT32 (lengths);
a model exported elsewhere may answer INT64 or BOOL outputs too (``contract.sessions``).
Little-endian, as every machine the service runs on."""

Header = dict[str, Any]


class FrameError(ValueError):
    """A message that does not follow this format (a bug, or a peer of another version)."""


def pack(parts: Sequence[tuple[Header, Sequence[np.ndarray]]]) -> list[Any]:
    """``[headers, array bytes...]`` for ``send_multipart(copy=False)``: each header gains its
    arrays' ``[dtype, shape]`` list. Non-contiguous arrays are made contiguous (a copy)."""
    headers: list[Header] = []
    frames: list[Any] = []
    for header, arrays in parts:
        # ascontiguousarray would make a 0-d array (a scalar output's row) one of shape (1,).
        contiguous = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in arrays]
        headers.append({**header, "arrays": [[a.dtype.str, a.shape] for a in contiguous]})
        frames.extend(contiguous)
    return [orjson.dumps(headers), *frames]


def unpack(frames: Sequence[zmq.Frame | bytes]) -> list[tuple[Header, list[np.ndarray]]]:
    """Each header and its arrays, of a message received with ``recv_multipart(copy=False)``."""
    if not frames:
        raise FrameError("empty message")
    head, *data = frames
    try:
        headers = orjson.loads(head.bytes if isinstance(head, zmq.Frame) else head)
        described = [header["arrays"] for header in headers]
    except (orjson.JSONDecodeError, TypeError, KeyError) as error:
        raise FrameError(f"unreadable headers: {error}") from error
    if sum(map(len, described)) != len(data):
        raise FrameError(
            f"headers describe {sum(map(len, described))} arrays but {len(data)} frames came"
        )
    parts, position = [], 0
    for header, arrays in zip(headers, described, strict=True):
        parts.append((header, [_array(spec, data[position + k]) for k, spec in enumerate(arrays)]))
        position += len(arrays)
    return parts


def _array(spec: Sequence[Any], frame: zmq.Frame | bytes) -> np.ndarray:
    dtype, shape = spec
    if dtype not in ALLOWED_DTYPES:
        raise FrameError(f"dtype {dtype!r} is not one the hand-off carries")
    buffer = frame.buffer if isinstance(frame, zmq.Frame) else frame
    array = np.frombuffer(buffer, dtype=dtype)
    if array.size != math.prod(shape):
        raise FrameError(f"frame of {array.size} {dtype} values for shape {shape}")
    return array.reshape(shape)
