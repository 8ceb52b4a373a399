"""The few pieces of the protobuf wire format and LevelDB encodings the checkpoint needs.

Decoding by hand keeps TensorFlow and generated ``*_pb2`` modules out of the import path; only
varints, fixed32/fixed64 and length-delimited fields occur in the messages read here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from tf1_checkpoint.errors import CorruptCheckpointError

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5

Field = tuple[int, int, int | bytes]
"""``(field_number, wire_type, value)``: ints for varint/fixed fields, bytes otherwise."""


def read_varint(data: bytes | memoryview, pos: int, what: str = "varint") -> tuple[int, int]:
    """Decode an unsigned varint (at most 64 bits) at ``pos``: ``(value, position after it)``."""
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise CorruptCheckpointError(f"truncated {what}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result >> 64:
                break
            return result, pos
    raise CorruptCheckpointError(f"malformed {what} (longer than 64 bits)")


def as_int64(value: int) -> int:
    """Reinterpret a 64-bit varint as two's complement (protobuf ``int64``, e.g. dim -1)."""
    return value - (1 << 64) if value >> 63 else value


def iter_fields(message: bytes | memoryview, what: str) -> Iterator[Field]:
    """Every field of a serialised message in file order (repeated fields appear repeatedly)."""
    pos = 0
    end = len(message)
    while pos < end:
        key, pos = read_varint(message, pos, f"{what} field key")
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise CorruptCheckpointError(f"{what}: field number 0")
        value: int | bytes
        if wire_type == VARINT:
            value, pos = read_varint(message, pos, f"{what} field {number}")
        elif wire_type == FIXED64:
            if pos + 8 > end:
                raise CorruptCheckpointError(f"{what}: truncated fixed64 field {number}")
            (value,) = struct.unpack_from("<Q", message, pos)
            pos += 8
        elif wire_type == FIXED32:
            if pos + 4 > end:
                raise CorruptCheckpointError(f"{what}: truncated fixed32 field {number}")
            (value,) = struct.unpack_from("<I", message, pos)
            pos += 4
        elif wire_type == LENGTH_DELIMITED:
            size, pos = read_varint(message, pos, f"{what} field {number} length")
            if pos + size > end:
                raise CorruptCheckpointError(f"{what}: field {number} runs past the message")
            value = bytes(message[pos : pos + size])
            pos += size
        else:
            # Groups (3, 4) are not used by any message read here.
            raise CorruptCheckpointError(f"{what}: unsupported wire type {wire_type}")
        yield number, wire_type, value


def expect_int(field: Field, what: str) -> int:
    number, wire_type, value = field
    if not isinstance(value, int):
        raise CorruptCheckpointError(f"{what}: field {number} has wire type {wire_type}")
    return value


def expect_bytes(field: Field, what: str) -> bytes:
    number, wire_type, value = field
    if not isinstance(value, bytes):
        raise CorruptCheckpointError(f"{what}: field {number} has wire type {wire_type}")
    return value
