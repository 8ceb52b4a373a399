"""``export.defaults`` (``python -m export.defaults``) end to end, on the default models shrunk
to train in a fraction of a second: train, export, skip until forced or retrained, exit 2 on an
unusable checkpoint."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import export.defaults as defaults
from export.metadata import read_metadata
from models.architectures import LSTMClassifier
from models.checkpoint import file_sha256, save_checkpoint

FAST = ["--max-length", "24"]


@pytest.fixture
def tiny_defaults(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[defaults.DefaultModel, ...]]:
    """The default models, shrunk to train in a fraction of a second."""
    if importlib.util.find_spec("aeon") is None and importlib.util.find_spec("sktime") is None:
        pytest.skip("JapaneseVowels ships with aeon or sktime; neither is installed")
    specs = (
        defaults.DefaultModel("bilstm", bidirectional=True, layer_sizes=(4,), epochs=1),
        defaults.DefaultModel("lstm", bidirectional=False, layer_sizes=(4, 3), epochs=1),
    )
    monkeypatch.setattr(defaults, "DEFAULT_MODELS", specs)
    # Models this small train fastest on one thread; on a busy 2-core machine, torch's spinning
    # worker threads made one epoch take seconds instead of a tenth of one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield specs
    torch.set_num_threads(threads)


def test_defaults_train_export_then_skip_until_forced(
    tiny_defaults: tuple[defaults.DefaultModel, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo, checkpoints = tmp_path / "repo", tmp_path / "ckpt"
    argv = ["--repository", str(repo), "--checkpoints", str(checkpoints), *FAST]

    assert defaults.main(argv) == 0
    out = capsys.readouterr().out
    for spec in tiny_defaults:
        assert f"[{spec.name}] training" in out
        model = repo / spec.name / "1" / "model.onnx"
        metadata = read_metadata(model)
        assert metadata["source_checkpoint_sha256"] == file_sha256(checkpoints / f"{spec.name}.pt")
        assert metadata["architecture"] == (
            "bidirectional_lstm" if spec.bidirectional else "stacked_lstm"
        )
        # Each model's int8 variant beside it, from the same checkpoint, its accuracy measured
        # next to fp32's on the test set.
        variant = read_metadata(repo / f"{spec.name}_int8" / "1" / "model.onnx")
        assert (metadata["precision"], variant["precision"]) == ("fp32", "int8")
        assert variant["source_checkpoint_sha256"] == metadata["source_checkpoint_sha256"]
        accuracy = json.loads(variant["accuracy"])
        assert set(accuracy) == {"dataset", "sequences", "fp32", "int8"}
        assert accuracy["fp32"] == json.loads(metadata["accuracy"])["fp32"]
        assert accuracy["fp32"] - accuracy["int8"] <= 0.005
        for name in (spec.name, f"{spec.name}_int8"):
            examples = json.loads((repo / name / "examples.json").read_text())["examples"]
            assert len(examples) == 9 and len(examples[0]["sequence"][0]) == 12  # JapaneseVowels
    written = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}

    assert defaults.main(argv) == 0  # nothing to do: same checkpoints, same exports
    out = capsys.readouterr().out
    assert "] training" not in out and out.count("up to date") == 4  # 2 models, 2 variants
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == written

    assert defaults.main([*argv, "--force", "--only", "lstm"]) == 0
    out = capsys.readouterr().out
    assert "[lstm] exporting" in out and "(forced)" in out and "[bilstm]" not in out


def test_defaults_export_again_when_the_checkpoint_changes(
    make_model: Callable[..., LSTMClassifier],
    tiny_defaults: tuple[defaults.DefaultModel, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo, checkpoints = tmp_path / "repo", tmp_path / "ckpt"
    argv = ["--repository", str(repo), "--checkpoints", str(checkpoints), "--only", "bilstm"]
    assert defaults.main([*argv, *FAST]) == 0
    # Someone retrains: a different checkpoint under the same name.
    save_checkpoint(checkpoints / "bilstm.pt", make_model(True, (4,)), {})
    capsys.readouterr()
    assert defaults.main([*argv, *FAST]) == 0
    out = capsys.readouterr().out
    assert "another checkpoint" in out
    metadata = read_metadata(repo / "bilstm" / "1" / "model.onnx")
    assert metadata["source_checkpoint_sha256"] == file_sha256(checkpoints / "bilstm.pt")
    assert metadata["input_size"] == "5"


def test_defaults_exit_2_on_an_unusable_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same report as ``python -m export``'s (``export.cli.run_export``): an error line and
    exit status 2, not a traceback; nothing written."""
    checkpoints = tmp_path / "ckpt"
    checkpoints.mkdir()
    (checkpoints / "bilstm.pt").write_bytes(b"not a checkpoint")
    repo = tmp_path / "repo"
    argv = ["--repository", str(repo), "--checkpoints", str(checkpoints), "--only", "bilstm"]
    assert defaults.main([*argv, *FAST]) == 2
    out = capsys.readouterr().out
    assert "[bilstm] checkpoint" in out and "error:" in out and "bilstm.pt" in out
    assert not repo.exists() or not any(repo.iterdir())
