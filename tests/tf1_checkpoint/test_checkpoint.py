"""``tf1_checkpoint.checkpoint``: TF checkpoint V2 read without TensorFlow, CRCs checked, and every
unsupported or damaged input refused with its own error."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.tf1_bundles import build_table, encode_entry, field_bytes, varint, write_bundle
from tests.support.tf1_shipped import BIDI_MULTI_DIR, DATA_DIR, load_manifest, model_dir
from tf1_checkpoint import (
    CheckpointNotFoundError,
    ChecksumError,
    CorruptCheckpointError,
    PartitionedVariableError,
    TFCheckpoint,
    UnsupportedCheckpointError,
    UnsupportedDTypeError,
    VariableNotFoundError,
    build_model,
    resolve_prefix,
)
from tf1_checkpoint.table import read_table

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- the shipped checkpoints -----------------------------------------------------------------


def test_variables_match_manifest(model_name: str) -> None:
    manifest = load_manifest(model_name)
    checkpoint = TFCheckpoint(model_dir(model_name) / "model.ckpt")
    expected = {
        name: (manifest["variable_dtypes"][name], tuple(shape))
        for name, shape in manifest["variables"].items()
    }
    assert checkpoint.variables() == expected
    assert checkpoint.header.num_shards == 1
    arrays = checkpoint.read_all()
    for name, (dtype, shape) in expected.items():
        assert arrays[name].dtype == np.dtype(dtype)
        assert arrays[name].shape == shape
    assert int(arrays["global_step"]) == 600
    assert np.isclose(arrays["beta1_power"], 0.9**600, rtol=1e-4)
    assert "tensorflow" not in sys.modules


def test_import_loads_neither_tensorflow_nor_protobuf() -> None:
    code = (
        "import sys\n"
        "from tf1_checkpoint import TFCheckpoint, list_variables\n"
        f"folder = {str(model_dir('bidi_lstm'))!r}\n"
        "list_variables(TFCheckpoint(folder))\n"
        "TFCheckpoint(folder).read_all()\n"
        "print('torch' in sys.modules)\n"
        "from tf1_checkpoint import build_model\n"
        "build_model(folder, folder + '/manifest.json')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'google')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    # Reading needs numpy only; building the model needs torch but never TF or protobuf.
    assert result.stdout.split("\n")[:2] == ["False", "[]"]


def test_prefix_resolution(tmp_path: Path, tf1_copy) -> None:
    folder = model_dir("basic_lstm")
    prefix = folder / "model.ckpt"
    for given in (folder, prefix, f"{prefix}.index", f"{prefix}.data-00000-of-00001"):
        assert resolve_prefix(given) == prefix
    # Saver records absolute paths; a moved folder still resolves to the files beside the state.
    moved = tf1_copy("basic_lstm")
    (moved / "checkpoint").write_text('model_checkpoint_path: "/gone/elsewhere/model.ckpt"\n')
    assert resolve_prefix(moved) == moved / "model.ckpt"
    (moved / "checkpoint").unlink()
    assert resolve_prefix(moved) == moved / "model.ckpt"  # the only .index there
    assert resolve_prefix(folder / "checkpoint") == prefix  # the state file itself
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint"):
        TFCheckpoint(tmp_path / "nothing")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint"):
        TFCheckpoint(tmp_path / "notes.txt")


def test_files_and_identity(tmp_path: Path) -> None:
    prefix = write_bundle(tmp_path / "m", {"a": np.ones(3), "b": np.zeros(2)}, num_shards=2)
    checkpoint = TFCheckpoint(prefix)
    names = [path.name for path in checkpoint.files()]
    assert names == ["m.index", "m.data-00000-of-00002", "m.data-00001-of-00002"]
    joined = b"".join(path.read_bytes() for path in checkpoint.files())
    assert checkpoint.sha256() == hashlib.sha256(joined).hexdigest()


def test_missing_variable_is_a_key_error() -> None:
    checkpoint = TFCheckpoint(model_dir("basic_lstm"))
    with pytest.raises(VariableNotFoundError, match="no/such") as caught:
        checkpoint.read("no/such")
    assert isinstance(caught.value, KeyError)


# -- damaged files ---------------------------------------------------------------------------


def test_flipped_tensor_byte_names_the_tensor(tf1_copy) -> None:
    folder = tf1_copy("multi_lstm")
    name = "rnn/multi_rnn_cell/cell_1/lstm_cell/kernel"
    entry = TFCheckpoint(folder).entry(name)
    data = folder / "model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + entry.size // 2] ^= 0x01
    data.write_bytes(bytes(raw))

    checkpoint = TFCheckpoint(folder)  # the index is intact
    with pytest.raises(ChecksumError, match="cell_1/lstm_cell/kernel") as caught:
        checkpoint.read(name)
    assert caught.value.what == name
    checkpoint.read("rnn/multi_rnn_cell/cell_0/lstm_cell/kernel")  # its neighbours still read
    with pytest.raises(ChecksumError, match="cell_1/lstm_cell/kernel"):
        build_model(folder, folder / "manifest.json")


def test_flipped_index_byte_is_rejected(tf1_copy) -> None:
    folder = tf1_copy("basic_lstm")
    index = folder / "model.ckpt.index"
    raw = bytearray(index.read_bytes())
    raw[raw.index(b"softmax")] ^= 0x20  # inside the data block: "Softmax"
    index.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="data block 0"):
        TFCheckpoint(folder)


def _footer(index_offset: int, index_size: int) -> bytes:
    return (varint(0) + varint(0) + varint(index_offset) + varint(index_size)).ljust(40, b"\0")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[:-1], "not a TensorFlow table"),
        (lambda raw: raw[:20], "shorter than a table footer"),
        (lambda raw: raw[:-48] + _footer(10_000, 5) + raw[-8:], "runs past the end"),
        (lambda raw: raw[:-48] + b"\xff" * 40 + raw[-8:], "longer than 64 bits"),
    ],
)
def test_malformed_index_is_rejected(tf1_copy, damage, message: str) -> None:
    folder = tf1_copy("basic_lstm")
    index = folder / "model.ckpt.index"
    index.write_bytes(damage(index.read_bytes()))
    with pytest.raises(CorruptCheckpointError, match=message):
        TFCheckpoint(folder)


def test_missing_shard(tf1_copy) -> None:
    folder = tf1_copy("basic_lstm")
    (folder / "model.ckpt.data-00000-of-00001").unlink()
    with pytest.raises(CheckpointNotFoundError, match="data-00000-of-00001 is missing"):
        TFCheckpoint(folder)


def test_truncated_shard(tf1_copy) -> None:
    folder = tf1_copy("basic_lstm")
    data = folder / "model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(CorruptCheckpointError, match="ends before"):
        TFCheckpoint(folder).read("softmax/b")


# -- synthetic checkpoints: the format's corners ---------------------------------------------


def test_round_trip_of_dtypes_shards_and_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "a/float32": rng.standard_normal((3, 4)).astype(np.float32),
        "a/float64": rng.standard_normal(5),
        "a/float16": rng.standard_normal((2, 2)).astype(np.float16),
        "b/int32": rng.integers(-5, 5, (2, 3), dtype=np.int32),
        "b/int64": np.array(-(2**40), dtype=np.int64),  # a scalar
        "b/bool": np.array([True, False, True]),
        "b/uint8": np.arange(7, dtype=np.uint8),
        "c/int8": np.array([-128, 127], dtype=np.int8),
        "c/int16": np.array([[-3]], dtype=np.int16),
        "c/uint16": np.array([65535], dtype=np.uint16),
        "c/complex64": np.array([1 + 2j], dtype=np.complex64),
        "c/empty": np.zeros((0, 3), dtype=np.float32),
        "c/large": rng.standard_normal(50_000).astype(np.float32),  # the vectorised CRC path
    }
    # Three shards, and blocks of 3 entries restarting every 2 keys: shared key prefixes,
    # several data blocks and restart points all get exercised.
    prefix = write_bundle(
        tmp_path / "model.ckpt", tensors, num_shards=3, entries_per_block=3, restart_interval=2
    )
    checkpoint = TFCheckpoint(prefix)
    assert checkpoint.header.num_shards == 3
    assert {e.shard_id for e in checkpoint.entries.values()} == {0, 1, 2}
    assert checkpoint.variables() == {k: (v.dtype.name, v.shape) for k, v in tensors.items()}
    for name, expected in checkpoint.read_all().items():
        np.testing.assert_array_equal(expected, tensors[name])
        assert expected.dtype == tensors[name].dtype


def test_bfloat16_widens_to_float32(tmp_path: Path) -> None:
    values = np.array([1.5, -2.0, 3.140625], dtype=np.float32)  # exact in bfloat16
    top_halves = (values.view(np.uint32) >> 16).astype(np.uint16)
    prefix = write_bundle(tmp_path / "m", {"w": top_halves}, overrides={"w": {"dtype": 14}})
    checkpoint = TFCheckpoint(prefix)
    assert checkpoint.variables()["w"] == ("bfloat16", (3,))
    np.testing.assert_array_equal(checkpoint.read("w"), values)


def test_unsupported_dtype(tmp_path: Path) -> None:
    prefix = write_bundle(
        tmp_path / "m",
        {"names": np.zeros(4, np.uint8), "ok": np.ones(2, np.float32)},
        overrides={"names": {"dtype": 7}},
    )
    checkpoint = TFCheckpoint(prefix)
    assert checkpoint.variables()["names"] == ("string", (4,))
    with pytest.raises(UnsupportedDTypeError, match="'names' has dtype string"):
        checkpoint.read("names")
    np.testing.assert_array_equal(checkpoint.read("ok"), [1, 1])


def test_partitioned_variable(tmp_path: Path) -> None:
    # TF keeps the slices under OrderedCode-encoded keys that start with a zero byte.
    slice_key = (b"\x00\x01part\x00\x01", encode_entry(1, (2,), 0, 0, 8, 0))
    prefix = write_bundle(
        tmp_path / "m",
        {"emb": np.zeros(4, np.float32)},
        overrides={"emb": {"slices": 2}},
        extra_entries=(slice_key,),
    )
    checkpoint = TFCheckpoint(prefix)
    assert list(checkpoint.variables()) == ["emb"]
    assert checkpoint.entry("emb").partitioned
    with pytest.raises(PartitionedVariableError, match="'emb' is a partitioned variable"):
        checkpoint.read("emb")


def test_big_endian_is_refused(tmp_path: Path) -> None:
    prefix = write_bundle(tmp_path / "m", {"w": np.ones(2, np.float32)}, header={"endianness": 1})
    with pytest.raises(UnsupportedCheckpointError, match="big-endian"):
        TFCheckpoint(prefix)


def test_newer_bundle_version_is_refused(tmp_path: Path) -> None:
    prefix = write_bundle(tmp_path / "m", {"w": np.ones(2, np.float32)}, header={"min_consumer": 2})
    with pytest.raises(UnsupportedCheckpointError, match="version"):
        TFCheckpoint(prefix)


def test_compressed_block_is_refused(tmp_path: Path) -> None:
    prefix = write_bundle(tmp_path / "m", {"w": np.ones(2, np.float32)}, compression=1)
    with pytest.raises(UnsupportedCheckpointError, match="Snappy-compressed"):
        TFCheckpoint(prefix)


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ({"masked_crc": 12345}, ChecksumError, "'w': CRC32C mismatch"),
        ({"size": 4}, CorruptCheckpointError, "4 bytes recorded, 8 expected"),
        ({"shard_id": 3}, CorruptCheckpointError, "shard 3 of 1"),
        ({"shape": (-1,)}, CorruptCheckpointError, "unknown dimension"),
    ],
)
def test_inconsistent_entries(tmp_path: Path, override, error, message: str) -> None:
    prefix = write_bundle(tmp_path / "m", {"w": np.ones(2, np.float32)}, overrides={"w": override})
    with pytest.raises(error, match=message):
        TFCheckpoint(prefix).read("w")


def test_index_without_header(tmp_path: Path) -> None:
    Path(f"{tmp_path}/m.index").write_bytes(build_table([(b"w", field_bytes(2, b""))]))
    with pytest.raises(CorruptCheckpointError, match="no bundle header"):
        TFCheckpoint(tmp_path / "m")


def test_keys_out_of_order(tmp_path: Path) -> None:
    header = (b"", b"")
    table = build_table([header, (b"b", b""), (b"a", b"")], entries_per_block=2)
    Path(f"{tmp_path}/m.index").write_bytes(table)
    with pytest.raises(CorruptCheckpointError, match="out of order"):
        read_table(table)


@pytest.mark.parametrize("v1_name", ["model.ckpt", "model.ckpt-00000-of-00001"])
def test_v1_checkpoint_is_refused(tmp_path: Path, v1_name: str) -> None:
    (tmp_path / v1_name).write_bytes(build_table([(b"", b"")]))
    with pytest.raises(UnsupportedCheckpointError, match="V1 checkpoint"):
        TFCheckpoint(tmp_path / "model.ckpt")


def test_graph_without_variables(tmp_path: Path) -> None:
    (tmp_path / "model.ckpt.meta").write_bytes(b"graph")
    with pytest.raises(CheckpointNotFoundError, match="graph only"):
        TFCheckpoint(tmp_path / "model.ckpt")


@pytest.mark.parametrize(("folder", "files"), [(DATA_DIR, 16), (BIDI_MULTI_DIR, 5)])
def test_shipped_files_match_provenance(folder: Path, files: int) -> None:
    """The shipped files are the recorded bytes (each PROVENANCE.md lists their hashes)."""
    listed = re.findall(r"^([0-9a-f]{64})  (\S+)$", (folder / "PROVENANCE.md").read_text(), re.M)
    assert len(listed) == files
    for digest, name in listed:
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
