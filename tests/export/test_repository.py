"""The model repository: Triton's layout and config schema, atomic writes, name rules."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

import onnxruntime as ort
import pytest
from google.protobuf import text_format

from contract.names import BATCH_DIM, INPUTS, LENGTHS, LOGITS, OUTPUTS, PROBS, validate_model_name
from export.repository import (
    atomic_write,
    model_versions,
    next_version,
    triton_config,
    write_model,
)
from models.architectures import LSTMClassifier


@pytest.fixture(scope="module")
def model_config_pb2() -> ModuleType:
    """Triton's ``inference.ModelConfig`` schema, from the tritonclient package.

    ``tritonclient.grpc``'s ``__init__`` refuses to import without grpcio (the http extra is
    what the project installs), but its generated ``model_config_pb2`` needs only protobuf.
    """
    try:
        from tritonclient.grpc import model_config_pb2  # type: ignore[import-not-found]

        return model_config_pb2
    except (ImportError, RuntimeError):
        pass
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tritonclient is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _parse(text: str, schema: ModuleType) -> Any:
    return text_format.Parse(text, schema.ModelConfig())


def test_config_parses_with_tritons_schema_and_matches_the_graph(
    torch_model: LSTMClassifier, session: ort.InferenceSession, model_config_pb2: ModuleType
) -> None:
    config = _parse(triton_config("my-model.v2", torch_model.config), model_config_pb2)
    schema = model_config_pb2
    assert config.name == "my-model.v2"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 256
    assert config.HasField("dynamic_batching")
    assert config.version_policy.WhichOneof("policy_choice") == "latest"
    assert config.version_policy.latest.num_versions == 1

    graph_inputs = {i.name: i for i in session.get_inputs()}
    graph_outputs = {o.name: o for o in session.get_outputs()}
    types = {"tensor(float)": schema.TYPE_FP32, "tensor(int32)": schema.TYPE_INT32}
    # With max_batch_size > 0, Triton's dims are the graph's shape without the leading batch
    # dim (-1 for a dynamic one); a [B] scalar-per-sequence is dims [1] reshaped to [].
    for tensor in list(config.input) + list(config.output):
        graph = graph_inputs.get(tensor.name) or graph_outputs[tensor.name]
        assert graph.shape[0] == BATCH_DIM
        expected = [d if isinstance(d, int) else -1 for d in graph.shape[1:]]
        if not expected:
            assert list(tensor.dims) == [1] and tensor.HasField("reshape")
            assert list(tensor.reshape.shape) == []
        else:
            assert list(tensor.dims) == expected
        assert tensor.data_type == types[graph.type]
    assert [i.name for i in config.input] == [INPUTS, LENGTHS]
    assert [o.name for o in config.output] == [LOGITS, PROBS, OUTPUTS]


@pytest.mark.parametrize("architecture", ["stacked"])
def test_config_takes_the_batch_size_and_rejects_bad_names(
    torch_model: LSTMClassifier, model_config_pb2: ModuleType
) -> None:
    config = _parse(triton_config("m", torch_model.config, max_batch_size=8), model_config_pb2)
    assert config.max_batch_size == 8
    with pytest.raises(ValueError, match="max_batch_size"):
        triton_config("m", torch_model.config, max_batch_size=0)


@pytest.mark.parametrize(
    "name", ["", ".hidden", "..", "-x", "a/b", "a b", "x" * 65, "ümlaut", "a\n", "_x"]
)
def test_invalid_model_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        validate_model_name(name)
    with pytest.raises(ValueError, match="invalid model name"):
        write_model(tmp_path, name, 1, b"onnx", "config")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["a", "bilstm", "Model_2.v-1", "9" + "x" * 63])
def test_valid_model_names_are_accepted(name: str) -> None:
    assert validate_model_name(name) == name


@pytest.mark.parametrize("version", [0, -1, True, 1.5, "1"])
def test_versions_must_be_positive_integers(version: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="version"):
        write_model(tmp_path, "m", version, b"onnx", "config")  # type: ignore[arg-type]


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_writes_the_triton_layout_and_leaves_no_temporaries(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    path = write_model(repo, "m", 1, b"first", "config 1")
    assert path == repo / "m" / "1" / "model.onnx"
    assert _tree(repo) == {"m/1/model.onnx": b"first", "m/config.pbtxt": b"config 1"}

    write_model(repo, "m", 2, b"second", "config 2")  # a new version of an existing model
    write_model(repo, "m", 1, b"first again", "config 3")  # an existing version, replaced
    assert _tree(repo) == {
        "m/1/model.onnx": b"first again",
        "m/2/model.onnx": b"second",
        "m/config.pbtxt": b"config 3",
    }
    assert sorted(os.listdir(repo / "m")) == ["1", "2", "config.pbtxt"]  # no dot-files left
    assert os.listdir(repo) == ["m"]
    # Readable by a server running as another user.
    for entry in (repo / "m", repo / "m" / "1", path, repo / "m" / "config.pbtxt"):
        assert entry.stat().st_mode & stat.S_IROTH


def test_versions_are_listed_and_the_next_one_counted(tmp_path: Path) -> None:
    assert model_versions(tmp_path, "m") == [] and next_version(tmp_path, "m") == 1
    write_model(tmp_path, "m", 3, b"x", "c")
    write_model(tmp_path, "m", 10, b"x", "c")
    (tmp_path / "m" / "7").mkdir()  # a version folder without a model is not a version
    (tmp_path / "m" / "notes").mkdir()
    assert model_versions(tmp_path, "m") == [3, 10]
    assert next_version(tmp_path, "m") == 11


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert os.listdir(tmp_path) == ["model.onnx"]
    assert target.read_bytes() == b"old"


def test_a_model_directory_appears_with_its_config_and_version_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Record what the repository looks like at the moment the model directory gets its name.
    seen: list[dict[str, bytes]] = []
    real_rename = os.rename

    def watching_rename(src: str | Path, dst: str | Path) -> None:
        real_rename(src, dst)
        if Path(dst) == tmp_path / "m":
            seen.append(_tree(tmp_path / "m"))

    monkeypatch.setattr(os, "rename", watching_rename)
    write_model(tmp_path, "m", 1, b"model", "config")
    assert seen == [{"1/model.onnx": b"model", "config.pbtxt": b"config"}]
