"""Read TensorFlow checkpoints in format V2 (``tf.compat.v1.train.Saver``'s default) without
TensorFlow.

A V2 checkpoint ``PREFIX`` is a "tensor bundle"::

    PREFIX.index                       a table (see ``tf1_checkpoint.table``): key "" holds a
                                       BundleHeaderProto, every other key a variable's name and
                                       its BundleEntryProto
    PREFIX.data-00000-of-0000N ...     raw little-endian tensor bytes, one file per shard

Protobuf fields read (``tensorflow/core/protobuf/tensor_bundle.proto``)::

    BundleHeaderProto  num_shards=1, endianness=2 (LITTLE=0, BIG=1), version=3 (VersionDef)
    VersionDef         producer=1, min_consumer=2, bad_consumers=3
    BundleEntryProto   dtype=1, shape=2 (TensorShapeProto), shard_id=3, offset=4, size=5,
                       crc32c=6 (fixed32, masked), slices=7 (present: partitioned variable)
    TensorShapeProto   dim=2 (Dim: size=1, name=2), unknown_rank=3

Every block CRC of the index and every tensor's CRC are verified.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tf1_checkpoint.crc32c import crc32c, unmask
from tf1_checkpoint.errors import (
    CheckpointNotFoundError,
    ChecksumError,
    CorruptCheckpointError,
    PartitionedVariableError,
    UnsupportedCheckpointError,
    UnsupportedDTypeError,
    VariableNotFoundError,
)
from tf1_checkpoint.table import FOOTER_SIZE, TABLE_MAGIC, read_table
from tf1_checkpoint.wire import as_int64, expect_bytes, expect_int, iter_fields

logger = logging.getLogger(__name__)

# DataType enum (tensorflow/core/framework/types.proto): number -> name.
DTYPE_NAMES = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    8: "complex64",
    9: "int64",
    10: "bool",
    11: "qint8",
    12: "quint8",
    13: "qint32",
    14: "bfloat16",
    15: "qint16",
    16: "quint16",
    17: "uint16",
    18: "complex128",
    19: "float16",
    20: "resource",
    21: "variant",
    22: "uint32",
    23: "uint64",
}
# Stored byte layout of the dtypes that have a plain numpy equivalent (data is little-endian).
_NUMPY_DTYPES = {
    "float32": "<f4",
    "float64": "<f8",
    "float16": "<f2",
    "int8": "i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "uint8": "u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "bool": "?",
    "complex64": "<c8",
    "complex128": "<c16",
    "bfloat16": "<u2",  # widened to float32 on read (the top half of a float32)
}
SUPPORTED_DTYPES = tuple(_NUMPY_DTYPES)
# The newest bundle format this reader understands (TF's kTensorBundleVersion producer).
_READER_VERSION = 1
_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")


@dataclass(frozen=True)
class BundleHeader:
    """The index's header: shard count, byte order and format version."""

    num_shards: int
    big_endian: bool
    producer: int
    min_consumer: int
    bad_consumers: tuple[int, ...]


@dataclass(frozen=True)
class TensorEntry:
    """Where and how one variable is stored (a decoded BundleEntryProto)."""

    name: str
    dtype: str
    """TensorFlow's dtype name (``"float32"``); ``"dtype_<n>"`` for enum values unknown here."""
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    """Bytes in the data shard."""
    masked_crc32c: int
    partitioned: bool
    """Saved in slices (partitioned variable); its bytes live under other, encoded keys."""


def _decode_shape(message: bytes, what: str) -> tuple[int, ...]:
    dims = []
    for field in iter_fields(message, f"{what} shape"):
        if field[0] == 2:
            size = 0  # proto3 default when the size field is absent
            for dim_field in iter_fields(expect_bytes(field, what), f"{what} dim"):
                if dim_field[0] == 1:
                    size = as_int64(expect_int(dim_field, what))
            if size < 0:
                raise CorruptCheckpointError(f"{what}: stored with an unknown dimension")
            dims.append(size)
        elif field[0] == 3 and expect_int(field, what):
            raise CorruptCheckpointError(f"{what}: stored with an unknown rank")
    return tuple(dims)


def decode_header(message: bytes) -> BundleHeader:
    """Decode a serialised BundleHeaderProto."""
    num_shards, endianness = 0, 0
    producer, min_consumer, bad = 0, 0, []
    for field in iter_fields(message, "bundle header"):
        number = field[0]
        if number == 1:
            num_shards = as_int64(expect_int(field, "bundle header"))
        elif number == 2:
            endianness = expect_int(field, "bundle header")
        elif number == 3:
            for version in iter_fields(expect_bytes(field, "bundle header"), "bundle version"):
                value = as_int64(expect_int(version, "bundle version"))
                if version[0] == 1:
                    producer = value
                elif version[0] == 2:
                    min_consumer = value
                elif version[0] == 3:
                    bad.append(value)
    return BundleHeader(num_shards, endianness == 1, producer, min_consumer, tuple(bad))


def decode_entry(name: str, message: bytes) -> TensorEntry:
    """Decode a serialised BundleEntryProto for the variable ``name``."""
    what = f"entry {name!r}"
    dtype_number, shard_id, offset, size, crc, partitioned = 0, 0, 0, 0, 0, False
    shape: tuple[int, ...] = ()
    for field in iter_fields(message, what):
        number = field[0]
        if number == 1:
            dtype_number = expect_int(field, what)
        elif number == 2:
            shape = _decode_shape(expect_bytes(field, what), what)
        elif number == 3:
            shard_id = as_int64(expect_int(field, what))
        elif number == 4:
            offset = as_int64(expect_int(field, what))
        elif number == 5:
            size = as_int64(expect_int(field, what))
        elif number == 6:
            crc = expect_int(field, what)
        elif number == 7:
            partitioned = True
    if min(shard_id, offset, size) < 0:
        raise CorruptCheckpointError(f"{what}: negative shard, offset or size")
    dtype = DTYPE_NAMES.get(dtype_number, f"dtype_{dtype_number}")
    return TensorEntry(name, dtype, shape, shard_id, offset, size, crc, partitioned)


def _unescape(text: str) -> str:
    """Undo text-proto string escapes (``\\"``, ``\\\\``, octal bytes) in a state-file path."""
    raw = re.sub(
        rb"\\([0-7]{1,3}|.)",
        lambda m: bytes([int(m[1], 8)]) if m[1][:1].isdigit() else m[1],
        text.encode("utf-8"),
    )
    return raw.decode("utf-8")


def _from_state_file(directory: Path) -> Path:
    state = directory / "checkpoint"
    if not state.is_file():
        indexes = sorted(directory.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        found = ", ".join(p.name for p in indexes) or "none"
        raise CheckpointNotFoundError(
            f"{directory} has no 'checkpoint' state file; pass a checkpoint prefix "
            f"(PREFIX for PREFIX.index; .index files there: {found})"
        )
    match = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', state.read_text(), re.M)
    if match is None:
        raise CheckpointNotFoundError(f"{state} names no model_checkpoint_path")
    recorded = Path(_unescape(match[1]))
    prefix = recorded if recorded.is_absolute() else directory / recorded
    if not recorded.is_absolute() or Path(f"{prefix}.index").is_file():
        return prefix
    # Saver records absolute paths; after the folder has been moved the files sit beside it.
    logger.info("%s: %s not found, using %s", state, recorded, directory / recorded.name)
    return directory / recorded.name


def _is_table(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size < FOOTER_SIZE:
        return False
    with path.open("rb") as handle:
        handle.seek(-8, 2)
        return int.from_bytes(handle.read(8), "little") == TABLE_MAGIC


def resolve_prefix(path: str | Path) -> Path:
    """The ``PREFIX`` of a V2 checkpoint, from the prefix itself, its ``.index`` or a data file,
    or a directory holding a ``checkpoint`` state file (``model_checkpoint_path: "..."``)."""
    path = Path(path)
    if path.name == "checkpoint" and path.is_file():
        path = path.parent  # the state file itself was given
    prefix = _from_state_file(path) if path.is_dir() else path
    if prefix.name.endswith(".index"):
        prefix = prefix.with_name(prefix.name[: -len(".index")])
    prefix = prefix.with_name(_DATA_SUFFIX.sub("", prefix.name))
    if Path(f"{prefix}.index").is_file():
        return prefix
    # V1 checkpoints are one table file per shard: PREFIX, or PREFIX-0000S-of-0000N.
    candidates = [prefix, *sorted(prefix.parent.glob(f"{glob.escape(prefix.name)}-?????-of-?????"))]
    v1_files = [candidate for candidate in candidates if _is_table(candidate)]
    if v1_files:
        raise UnsupportedCheckpointError(
            f"{v1_files[0]} is a V1 checkpoint (no {prefix.name}.index); only format V2 is "
            "supported. Re-save it with TensorFlow: tf.compat.v1.train.Saver("
            "write_version=tf.compat.v1.train.SaverDef.V2)"
        )
    if Path(f"{prefix}.meta").is_file():
        raise CheckpointNotFoundError(
            f"{prefix}.meta is a graph only; the variables ({prefix.name}.index and "
            f"{prefix.name}.data-*) are missing"
        )
    raise CheckpointNotFoundError(f"no checkpoint at {path} ({prefix}.index does not exist)")


class TFCheckpoint:
    """A V2 checkpoint opened for reading: the index is parsed and checked on construction,
    tensor bytes are read (and CRC-checked) on demand.

    ``TFCheckpoint("tests/data/tf1/basic_lstm").variables()["softmax/W"]`` is
    ``("float32", (32, 9))``.
    """

    def __init__(self, path: str | Path) -> None:
        self.prefix = resolve_prefix(path)
        index_path = Path(f"{self.prefix}.index")
        records = read_table(index_path.read_bytes(), name=index_path.name)
        if not records or records[0][0] != b"":
            raise CorruptCheckpointError(
                f"{index_path}: no bundle header (key ''); not a V2 checkpoint index"
            )
        self.header = decode_header(records[0][1])
        self._check_header(index_path)
        self._entries: dict[str, TensorEntry] = {}
        for key, value in records[1:]:
            if key.startswith(b"\x00"):
                # Slices of partitioned variables, keyed by TF's OrderedCode encoding; their
                # full-variable entry (with ``slices``) is what is reported.
                continue
            name = key.decode("utf-8", errors="replace")
            entry = decode_entry(name, value)
            if entry.shard_id >= self.header.num_shards:
                raise CorruptCheckpointError(
                    f"{index_path}: {name!r} is in shard {entry.shard_id} of "
                    f"{self.header.num_shards}"
                )
            self._entries[name] = entry
        for shard in range(self.header.num_shards):
            if not self.shard_path(shard).is_file():
                raise CheckpointNotFoundError(
                    f"data shard {self.shard_path(shard)} is missing "
                    f"({self.header.num_shards} shard(s) expected)"
                )

    def _check_header(self, index_path: Path) -> None:
        header = self.header
        if header.num_shards < 1:
            raise CorruptCheckpointError(f"{index_path}: num_shards is {header.num_shards}")
        if header.big_endian:
            raise UnsupportedCheckpointError(
                f"{index_path}: written on a big-endian machine; only little-endian "
                "checkpoints are supported"
            )
        if header.min_consumer > _READER_VERSION or _READER_VERSION in header.bad_consumers:
            raise UnsupportedCheckpointError(
                f"{index_path}: bundle format version {header.producer} needs a reader of "
                f"version >= {header.min_consumer}; this one is version {_READER_VERSION}"
            )

    def shard_path(self, shard: int) -> Path:
        """``PREFIX.data-0000S-of-0000N``."""
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.header.num_shards:05d}")

    @property
    def entries(self) -> dict[str, TensorEntry]:
        """Every variable's storage record, by name (sorted, as in the index)."""
        return dict(self._entries)

    def variables(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """``{name: (dtype name, shape)}`` for every variable, optimizer slots included."""
        return {name: (e.dtype, e.shape) for name, e in self._entries.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> TensorEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise VariableNotFoundError(
                f"no variable {name!r} in {self.prefix}", name=name
            ) from None

    def read(self, name: str) -> np.ndarray:
        """The variable's value with its stored shape and dtype (bfloat16 becomes float32)."""
        entry = self.entry(name)
        if entry.partitioned:
            raise PartitionedVariableError(
                f"{name!r} is a partitioned variable saved in slices; not supported "
                "(re-save it unpartitioned)"
            )
        stored = _NUMPY_DTYPES.get(entry.dtype)
        if stored is None:
            raise UnsupportedDTypeError(
                f"{name!r} has dtype {entry.dtype}; supported: {', '.join(SUPPORTED_DTYPES)}"
            )
        count = int(np.prod(entry.shape, dtype=np.int64))
        expected = count * np.dtype(stored).itemsize
        if entry.size != expected:
            raise CorruptCheckpointError(
                f"{name!r}: {entry.size} bytes recorded, {expected} expected for "
                f"{entry.dtype}{list(entry.shape)}"
            )
        path = self.shard_path(entry.shard_id)
        with path.open("rb") as handle:
            handle.seek(entry.offset)
            data = handle.read(entry.size)
        if len(data) != entry.size:
            raise CorruptCheckpointError(
                f"{name!r}: {path.name} ends before offset {entry.offset} + {entry.size}"
            )
        actual = crc32c(data)
        if actual != unmask(entry.masked_crc32c):
            raise ChecksumError(
                f"{name!r}: CRC32C mismatch in {path.name} at offset {entry.offset} (stored "
                f"{unmask(entry.masked_crc32c):#010x}, computed {actual:#010x}); the data "
                "file is corrupt",
                what=name,
            )
        array = np.frombuffer(data, dtype=stored).reshape(entry.shape)
        if entry.dtype == "bfloat16":
            return (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(array.dtype.newbyteorder("="))  # a native-order, writable copy

    def read_all(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """``{name: read(name)}`` for ``names`` (default: every variable)."""
        return {name: self.read(name) for name in (self._entries if names is None else names)}

    def files(self) -> list[Path]:
        """The checkpoint's files: the index, then the data shards in order."""
        shards = [self.shard_path(shard) for shard in range(self.header.num_shards)]
        return [Path(f"{self.prefix}.index"), *shards]

    def sha256(self) -> str:
        """Hex SHA-256 over the bytes of ``files()`` in order: one identity for the whole
        checkpoint (for ``source_checkpoint_sha256`` in exports)."""
        digest = hashlib.sha256()
        for path in self.files():
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"TFCheckpoint({str(self.prefix)!r}, {len(self._entries)} variables)"
