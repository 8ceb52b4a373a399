"""Reader for the immutable sorted key/value "table" files (LevelDB SSTable format) that
TensorFlow writes as a checkpoint's ``.index``.

Layout (``tensorflow/core/lib/io/format.h``)::

    [data block]* [metaindex block] [index block] [footer: 48 bytes]
    footer = metaindex BlockHandle, index BlockHandle (varint64 offset + size each),
             zero padding to 40 bytes, then the magic 0xdb4775248b80fb57 (fixed64)
    block  = entries, restart offsets (fixed32 each), restart count (fixed32),
             then a 5-byte trailer: compression type (1 byte), masked CRC32C (fixed32) of
             the block contents and the type byte
    entry  = shared key bytes, non-shared key bytes, value length (varints),
             the non-shared key bytes, the value

The index block maps a separator key to the ``BlockHandle`` of each data block, in key order.
TensorFlow writes bundle indexes uncompressed; a compressed (Snappy) block is refused.
"""

from __future__ import annotations

import struct

from tf1_checkpoint.crc32c import crc32c, unmask
from tf1_checkpoint.errors import ChecksumError, CorruptCheckpointError, UnsupportedCheckpointError
from tf1_checkpoint.wire import read_varint

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two BlockHandles padded to 40 bytes, plus the 8-byte magic
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION = 0
_COMPRESSION_NAMES = {1: "Snappy", 2: "Zlib"}


def _read_handle(data: bytes | memoryview, pos: int, what: str) -> tuple[tuple[int, int], int]:
    offset, pos = read_varint(data, pos, f"{what} offset")
    size, pos = read_varint(data, pos, f"{what} size")
    return (offset, size), pos


def read_block(data: bytes, handle: tuple[int, int], what: str) -> memoryview:
    """The checked contents of the block at ``handle = (offset, size)`` (trailer excluded)."""
    offset, size = handle
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(data) - FOOTER_SIZE:
        raise CorruptCheckpointError(
            f"{what} at offset {offset} (size {size}) runs past the end of the file"
        )
    block = memoryview(data)[offset : end + 1]  # contents and the compression-type byte
    (stored,) = struct.unpack_from("<I", data, end + 1)
    actual = crc32c(block)
    if unmask(stored) != actual:
        raise ChecksumError(
            f"{what} at offset {offset}: CRC32C mismatch (stored {unmask(stored):#010x}, "
            f"computed {actual:#010x}); the index file is corrupt",
            what=what,
        )
    compression = data[end]
    if compression != NO_COMPRESSION:
        name = _COMPRESSION_NAMES.get(compression, f"unknown type {compression}")
        raise UnsupportedCheckpointError(
            f"{what} is {name}-compressed; only uncompressed tables are supported "
            "(TensorFlow writes checkpoint indexes uncompressed)"
        )
    return block[:-1]


def iter_block(block: memoryview, what: str) -> list[tuple[bytes, bytes]]:
    """Decode a block's prefix-compressed entries: ``[(key, value), ...]`` in stored order."""
    size = len(block)
    if size < 4:
        raise CorruptCheckpointError(f"{what}: block of {size} bytes has no restart array")
    (num_restarts,) = struct.unpack_from("<I", block, size - 4)
    restarts_start = size - 4 * (num_restarts + 1)
    if num_restarts == 0 or restarts_start < 0:
        raise CorruptCheckpointError(f"{what}: bad restart count {num_restarts}")
    restarts = set(struct.unpack_from(f"<{num_restarts}I", block, restarts_start))
    if max(restarts) >= max(restarts_start, 1):
        raise CorruptCheckpointError(f"{what}: restart offset past the entries")
    entries = []
    key = b""
    pos = 0
    while pos < restarts_start:
        start = pos
        shared, pos = read_varint(block, pos, f"{what} entry")
        non_shared, pos = read_varint(block, pos, f"{what} entry")
        value_length, pos = read_varint(block, pos, f"{what} entry")
        if shared > len(key) or (start in restarts and shared):
            raise CorruptCheckpointError(f"{what}: entry at {start} shares {shared} key bytes")
        if pos + non_shared + value_length > restarts_start:
            raise CorruptCheckpointError(f"{what}: entry at {start} runs past the entries")
        key = key[:shared] + bytes(block[pos : pos + non_shared])
        pos += non_shared
        entries.append((key, bytes(block[pos : pos + value_length])))
        pos += value_length
    return entries


def read_table(data: bytes, name: str = "table") -> list[tuple[bytes, bytes]]:
    """Every ``(key, value)`` of a table file's bytes, in key order, with all CRCs checked."""
    if len(data) < FOOTER_SIZE:
        raise CorruptCheckpointError(f"{name}: {len(data)} bytes, shorter than a table footer")
    footer = memoryview(data)[len(data) - FOOTER_SIZE :]
    (magic,) = struct.unpack_from("<Q", footer, 40)
    if magic != TABLE_MAGIC:
        raise CorruptCheckpointError(
            f"{name}: not a TensorFlow table file (footer magic {magic:#018x}, "
            f"expected {TABLE_MAGIC:#018x})"
        )
    # The metaindex (filter blocks) is not needed to list every entry; only the index is read.
    _, pos = _read_handle(footer, 0, f"{name} metaindex handle")
    index_handle, _ = _read_handle(footer, pos, f"{name} index handle")
    index = iter_block(read_block(data, index_handle, f"{name} index block"), f"{name} index")
    entries: list[tuple[bytes, bytes]] = []
    for number, (_, handle_bytes) in enumerate(index):
        what = f"{name} data block {number}"
        handle, _ = _read_handle(handle_bytes, 0, f"{what} handle")
        for key, value in iter_block(read_block(data, handle, what), what):
            if entries and key <= entries[-1][0]:
                raise CorruptCheckpointError(f"{what}: keys out of order at {key!r}")
            entries.append((key, value))
    return entries
