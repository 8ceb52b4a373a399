"""A tiny writer of TF checkpoint V2 files, for building synthetic (and broken) checkpoints.

It writes what ``tensorflow/core/util/tensor_bundle`` writes: an uncompressed table index (key
"" = BundleHeaderProto, then one BundleEntryProto per variable) and little-endian data shards,
with masked CRC32Cs. Knobs let a test produce what TensorFlow would not: compressed blocks,
big-endian headers, wrong CRCs, arbitrary entry fields.

``uni_lstm_tensors`` and ``bidi_lstm_tensors`` give the variables of small LSTM classifiers under
the names TF 1.x gives them, to write with ``write_bundle``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from tf1_checkpoint.crc32c import crc32c, mask

DTYPE_ENUM = {
    "float32": 1,
    "float64": 2,
    "int32": 3,
    "uint8": 4,
    "int16": 5,
    "int8": 6,
    "complex64": 8,
    "int64": 9,
    "bool": 10,
    "uint16": 17,
    "complex128": 18,
    "float16": 19,
    "uint32": 22,
    "uint64": 23,
}


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as protobuf writes it: ten bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def field_bytes(number: int, data: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(data)) + data


def field_fixed32(number: int, value: int) -> bytes:
    return varint(number << 3 | 5) + struct.pack("<I", value)


def encode_header(num_shards: int = 1, endianness: int = 0, min_consumer: int = 0) -> bytes:
    version = field_varint(1, 1) + (field_varint(2, min_consumer) if min_consumer else b"")
    header = field_varint(1, num_shards) + (field_varint(2, endianness) if endianness else b"")
    return header + field_bytes(3, version)


def encode_entry(
    dtype: int,
    shape: tuple[int, ...],
    shard_id: int,
    offset: int,
    size: int,
    masked_crc: int,
    slices: int = 0,
) -> bytes:
    shape_bytes = b"".join(field_bytes(2, field_varint(1, dim)) for dim in shape)
    entry = field_varint(1, dtype) + field_bytes(2, shape_bytes)
    if shard_id:
        entry += field_varint(3, shard_id)
    if offset:
        entry += field_varint(4, offset)
    entry += field_varint(5, size) + field_fixed32(6, masked_crc)
    # A TensorSliceProto per slice; its content does not matter to the reader.
    entry += b"".join(field_bytes(7, field_bytes(1, b"")) for _ in range(slices))
    return entry


def build_block(entries: list[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    """Block contents: prefix-compressed entries, restart array, restart count."""
    out = bytearray()
    restarts = []
    previous = b""
    for number, (key, value) in enumerate(entries):
        shared = 0
        if number % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value))
        out += key[shared:] + value
        previous = key
    restarts = restarts or [0]
    out += struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def _append_block(out: bytearray, contents: bytes, compression: int) -> bytes:
    """Append block + trailer; return its encoded BlockHandle."""
    handle = varint(len(out)) + varint(len(contents))
    trailer = bytes([compression])
    out += contents + trailer + struct.pack("<I", mask(crc32c(contents + trailer)))
    return handle


def build_table(
    entries: list[tuple[bytes, bytes]],
    entries_per_block: int = 1000,
    restart_interval: int = 16,
    compression: int = 0,
) -> bytes:
    """A complete table file from sorted ``entries``."""
    out = bytearray()
    index = []
    for start in range(0, len(entries), entries_per_block):
        chunk = entries[start : start + entries_per_block]
        handle = _append_block(out, build_block(chunk, restart_interval), compression)
        index.append((chunk[-1][0], handle))  # the last key is a valid separator
    metaindex = _append_block(out, build_block([]), compression)
    index_handle = _append_block(out, build_block(index, 1), compression)
    footer = (metaindex + index_handle).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    return bytes(out + footer)


def write_bundle(
    prefix: str | Path,
    tensors: dict[str, np.ndarray],
    *,
    num_shards: int = 1,
    header: dict[str, Any] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    extra_entries: tuple[tuple[bytes, bytes], ...] = (),
    **table_options: Any,
) -> Path:
    """Write ``PREFIX.index`` and ``PREFIX.data-*`` holding ``tensors`` (round-robin over
    shards). ``overrides[name]`` replaces ``encode_entry`` arguments (``dtype``, ``size``,
    ``masked_crc``, ``slices``...); ``header`` replaces ``encode_header`` arguments."""
    prefix = Path(prefix)
    shards = [bytearray() for _ in range(num_shards)]
    records = [(b"", encode_header(num_shards=num_shards, **(header or {})))]
    for number, name in enumerate(sorted(tensors)):
        array = np.asarray(tensors[name])  # tobytes() is C order; keeps 0-d shapes
        data = array.astype(array.dtype.newbyteorder("<")).tobytes()
        shard = number % num_shards
        fields = {
            "dtype": DTYPE_ENUM[array.dtype.name],
            "shape": array.shape,
            "shard_id": shard,
            "offset": len(shards[shard]),
            "size": len(data),
            "masked_crc": mask(crc32c(data)),
        }
        fields.update((overrides or {}).get(name, {}))
        shards[shard] += data
        records.append((name.encode(), encode_entry(**fields)))
    records = sorted(records + list(extra_entries))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.index").write_bytes(build_table(records, **table_options))
    for shard, data in enumerate(shards):
        Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}").write_bytes(bytes(data))
    return prefix


# -- the variables of small LSTM classifiers, as TF 1.x names them ---------------------------------


def bidi_lstm_tensors(
    fw_units: int, bw_units: int, scope: str = "bidirectional_rnn/{d}/lstm_cell"
) -> dict[str, np.ndarray]:
    """The tensors of a one-layer bidirectional LSTM over 3 features (``scope`` formatted with
    ``d`` = ``fw``, ``bw``) and a 2-class ``softmax/W`` + ``softmax/b`` head: random kernels,
    zero biases and head."""
    rng = np.random.default_rng(1)
    tensors = {}
    for d, units in (("fw", fw_units), ("bw", bw_units)):
        prefix = scope.format(d=d)
        tensors[f"{prefix}/kernel"] = rng.standard_normal((3 + units, 4 * units), np.float32)
        tensors[f"{prefix}/bias"] = np.zeros(4 * units, np.float32)
    width = fw_units + bw_units
    return tensors | {"softmax/W": np.zeros((width, 2), np.float32), "softmax/b": np.zeros(2)}


def uni_lstm_tensors(units: int = 4, **extra: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The zero tensors of a one-layer ``rnn/lstm_cell`` over 3 features and a 2-class
    ``softmax/W`` + ``softmax/b`` head, plus a zero tensor of each shape in ``extra`` (by
    name)."""
    tensors = {
        "rnn/lstm_cell/kernel": np.zeros((3 + units, 4 * units), np.float32),
        "rnn/lstm_cell/bias": np.zeros(4 * units, np.float32),
        "softmax/W": np.zeros((units, 2), np.float32),
        "softmax/b": np.zeros(2, np.float32),
    }
    return tensors | {name: np.zeros(shape, np.float32) for name, shape in extra.items()}
