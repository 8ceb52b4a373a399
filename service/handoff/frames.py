"""One message on the wire: a JSON header, then one raw frame per array.

The header names each array's dtype and shape (``"arrays": [[dtype, shape], ...]``) in frame
order, so arrays cross as their bytes: no per-element conversion, no pickling. Frames are sent
without copying (pyzmq copies only frames under its ``copy_threshold``, where a copy is cheaper
than pinning the buffer) and read back with ``np.frombuffer`` over the received frame: the
arrays a receiver gets are read-only views of the message's memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import zmq

ALLOWED_DTYPES = frozenset({"float32", "int32", "int64", "float64"})
"""What crosses: the service's tensors are FP32 (inputs, states, outputs) and INT32 (lengths)."""


class FrameError(ValueError):
    """A message that does not follow this format (a bug, or a peer of another version)."""


def pack(header: dict[str, Any], arrays: Sequence[np.ndarray]) -> list[Any]:
    """``[header, array bytes...]`` for ``send_multipart(copy=False)``; ``header`` gains the
    arrays' ``[dtype, shape]`` list. Non-contiguous arrays are made contiguous (a copy)."""
    contiguous = [np.ascontiguousarray(a) for a in arrays]
    header = {**header, "arrays": [[a.dtype.name, list(a.shape)] for a in contiguous]}
    return [orjson.dumps(header), *contiguous]


def unpack(frames: Sequence[zmq.Frame | bytes]) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The header and the arrays of a message received with ``recv_multipart(copy=False)``."""
    if not frames:
        raise FrameError("empty message")
    head, *data = frames
    header = orjson.loads(head.bytes if isinstance(head, zmq.Frame) else head)
    described = header.get("arrays", [])
    if len(described) != len(data):
        raise FrameError(f"header describes {len(described)} arrays but {len(data)} frames came")
    arrays = []
    for (dtype, shape), frame in zip(described, data, strict=True):
        if dtype not in ALLOWED_DTYPES:
            raise FrameError(f"dtype {dtype!r} is not one the hand-off carries")
        buffer = frame.buffer if isinstance(frame, zmq.Frame) else frame
        array = np.frombuffer(buffer, dtype=dtype)
        expected = int(np.prod(shape, dtype=np.int64))
        if array.size != expected:
            raise FrameError(f"frame of {array.size} {dtype} values for shape {shape}")
        arrays.append(array.reshape(shape))
    return header, arrays
