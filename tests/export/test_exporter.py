"""``export_model`` / ``export_checkpoint``: files in place, metadata per the contract, nothing
written when verification fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from contract.names import METADATA_KEYS
from export import (
    VerificationError,
    export_checkpoint,
    export_model,
    read_metadata,
)
from export.metadata import state_dict_sha256
from export.verify import VerifySettings
from models.architectures import LSTMClassifier
from models.checkpoint import file_sha256, save_checkpoint


def test_metadata_follows_the_contract(
    architecture: str, torch_model: LSTMClassifier, fast_verify: VerifySettings, tmp_path: Path
) -> None:
    result = export_model(torch_model, tmp_path, "tiny", 3, verify=fast_verify)
    metadata = read_metadata(result.model_path)
    assert tuple(metadata) == METADATA_KEYS
    config = torch_model.config
    assert metadata["name"] == "tiny" and metadata["version"] == "3"
    assert metadata["architecture"] == (
        "bidirectional_lstm" if config.bidirectional else "stacked_lstm"
    )
    assert json.loads(metadata["layer_sizes"]) == list(config.layer_sizes)
    assert metadata["bidirectional"] == ("true" if config.bidirectional else "false")
    assert metadata["topology"] == (
        "per_direction" if architecture == "per_direction" else "stacked"
    )
    assert metadata["input_size"] == "5" and metadata["num_classes"] == "3"
    assert json.loads(metadata["labels"]) == ["ka", "ki", "ku"]
    assert metadata["max_length_verified"] == str(fast_verify.max_length)
    assert metadata["source_checkpoint_sha256"] == state_dict_sha256(torch_model)
    assert json.loads(metadata["parity"]) == result.report.parity()
    assert metadata["contract"] == "lstm-serving/onnx-v1"
    assert all(isinstance(value, str) for value in metadata.values())
    assert metadata == result.metadata


@pytest.mark.parametrize("architecture", ["stacked"])
def test_export_writes_model_and_config_and_counts_versions(
    torch_model: LSTMClassifier, fast_verify: VerifySettings, tmp_path: Path
) -> None:
    first = export_model(torch_model, tmp_path, "m", verify=fast_verify)
    second = export_model(torch_model, tmp_path, "m", verify=fast_verify)
    assert (first.version, second.version) == (1, 2)
    assert first.model_path == tmp_path / "m" / "1" / "model.onnx"
    assert second.config_path == tmp_path / "m" / "config.pbtxt"
    assert 'name: "m"' in second.config_path.read_text()
    onnx.checker.check_model(str(second.model_path))


def test_checkpoint_export_records_the_file_hash(
    make_model: Callable[..., LSTMClassifier], fast_verify: VerifySettings, tmp_path: Path
) -> None:
    model = make_model(bidirectional=True, layer_sizes=(4,))
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", model, {"note": "test"})
    result = export_checkpoint(checkpoint, tmp_path / "repo", "tiny", verify=fast_verify)
    assert result.metadata["source_checkpoint_sha256"] == file_sha256(checkpoint)
    assert result.report.passed


def test_state_dict_hash_tracks_the_weights(make_model: Callable[..., LSTMClassifier]) -> None:
    model = make_model(bidirectional=False, layer_sizes=(4,))
    same = make_model(bidirectional=False, layer_sizes=(4,))
    other = make_model(bidirectional=False, layer_sizes=(4,), seed=1)
    assert state_dict_sha256(model) == state_dict_sha256(same)
    assert state_dict_sha256(model) != state_dict_sha256(other)


@pytest.mark.parametrize("architecture", ["stacked"])
def test_failed_verification_writes_nothing(
    torch_model: LSTMClassifier,
    fast_verify: VerifySettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import export.exporter as exporter

    real_build = exporter.build_onnx_model

    def build_broken(model, **kwargs):  # type: ignore[no-untyped-def]
        proto = real_build(model, **kwargs)
        for node in proto.graph.node:
            if node.op_type == "Softmax":
                node.attribute[0].i = 0  # softmax over the batch instead of the classes
        return proto

    monkeypatch.setattr(exporter, "build_onnx_model", build_broken)
    with pytest.raises(VerificationError) as raised:
        export_model(torch_model, tmp_path / "repo", "m", verify=fast_verify)
    assert not raised.value.report.check("ort_vs_torch").passed
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_export_leaves_the_callers_model_as_it_was(
    make_model: Callable[..., LSTMClassifier], fast_verify: VerifySettings, tmp_path: Path
) -> None:
    model = make_model(bidirectional=False, layer_sizes=(4,)).train()
    export_model(model, tmp_path, "m", verify=fast_verify)
    assert model.training  # exported in eval mode from a copy


@pytest.mark.parametrize("architecture", ["stacked"])
def test_bad_names_fail_before_any_work(
    torch_model: LSTMClassifier, fast_verify: VerifySettings, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        export_model(torch_model, tmp_path, "../escape", verify=fast_verify)
    with pytest.raises(ValueError, match="version"):
        export_model(torch_model, tmp_path, "m", 0, verify=fast_verify)
    assert not any(tmp_path.iterdir())
