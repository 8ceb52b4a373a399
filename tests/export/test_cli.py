"""``export.cli`` (``python -m export``) end to end, on tiny models: flags, the report, the
up-to-date check, exit statuses. (``python -m export.defaults``: ``test_defaults.py``;
``python -m export.from_tf``: ``test_from_tf.py``; ``python -m export --torch-module``:
``test_from_torch.py``.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from contract.providers import ProviderUnavailableError
from contract.sessions import create_session
from export.cli import main
from export.metadata import read_metadata
from models.architectures import LSTMClassifier
from models.checkpoint import file_sha256, save_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = ["--max-length", "24"]


@pytest.fixture
def checkpoint(make_model: Callable[..., LSTMClassifier], tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "tiny.pt", make_model(False, (6, 4)), {"test": True})


def test_help_lists_the_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "export", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for flag in ("--name", "--version", "--repository", "--provider", "--tolerance"):
        assert flag in result.stdout
    for flag in ("--torch-module", "--state-dict", "--torch-kwargs", "--labels"):
        assert flag in result.stdout


def test_help_and_bad_flags_import_no_torch() -> None:
    """``--help`` stays fast: torch (and the user's module) only once the arguments are good."""
    program = (
        "import sys\n"
        "from export.cli import main\n"
        "for argv in (['--help'], ['--torch-module', 'm:f', '--name', 'x']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"
    assert "needs --state-dict" in result.stderr


def test_export_prints_the_report_and_writes_the_repository(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    argv = [str(checkpoint), "--name", "tiny", "--version", "2", "--repository", str(repo)]
    code = main([*argv, *FAST])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "all checks passed" in out and "chunked_equals_whole" in out
    model = repo / "tiny" / "2" / "model.onnx"
    assert model.is_file() and (repo / "tiny" / "config.pbtxt").is_file()
    metadata = read_metadata(model)
    assert metadata["source_checkpoint_sha256"] == file_sha256(checkpoint)
    assert metadata["max_length_verified"] == "24"


def test_a_rerun_on_the_same_checkpoint_writes_nothing_until_forced(
    make_model: Callable[..., LSTMClassifier],
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's command run twice: the second run says the latest version is up to date and
    writes no identical version 2; ``--force`` writes it; another checkpoint is exported."""
    repo = tmp_path / "repo"
    argv = [str(checkpoint), "--name", "tiny", "--repository", str(repo), *FAST]
    assert main(argv) == 0
    capsys.readouterr()
    written = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"up to date: {repo / 'tiny' / '1'}" in out and "nothing written" in out
    assert "--force" in out and file_sha256(checkpoint)[:16] in out
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == written
    assert not (repo / "tiny" / "2").exists()

    assert main([*argv, "--version", "1"]) == 0  # the version asked for holds the same export
    assert "up to date" in capsys.readouterr().out

    assert main([*argv, "--force"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert read_metadata(repo / "tiny" / "2" / "model.onnx")["version"] == "2"

    other = save_checkpoint(tmp_path / "other.pt", make_model(False, (6, 4), seed=1), {})
    assert main([str(other), *argv[1:]]) == 0  # a different checkpoint: version 3
    assert "up to date" not in capsys.readouterr().out
    assert read_metadata(repo / "tiny" / "3" / "model.onnx")["source_checkpoint_sha256"] == (
        file_sha256(other)
    )


def test_failed_verification_exits_1_and_writes_nothing(
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import export.exporter as exporter

    real_build = exporter.build_onnx_model

    def build_without_lengths(model, **kwargs):  # type: ignore[no-untyped-def]
        proto = real_build(model, **kwargs)
        for node in proto.graph.node:
            if node.op_type == "LSTM":
                node.input[4] = ""  # the classic bug: padding runs through the LSTM
        return proto

    monkeypatch.setattr(exporter, "build_onnx_model", build_without_lengths)
    repo = tmp_path / "repo"
    code = main([str(checkpoint), "--name", "tiny", "--repository", str(repo), *FAST])
    out = capsys.readouterr().out
    assert code == 1
    assert "VERIFICATION FAILED" in out and "FAIL padding_invariance" in out
    assert not (repo / "tiny").exists()


@pytest.mark.parametrize(
    "argv_tail, message",
    [
        (["--name", "../up"], "invalid model name"),
        (["--name", "ok", "--version", "0"], "version"),
    ],
)
def test_bad_arguments_exit_2(
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv_tail: list[str],
    message: str,
) -> None:
    code = main([str(checkpoint), "--repository", str(tmp_path / "repo"), *argv_tail])
    assert code == 2
    assert message in capsys.readouterr().out


def test_a_missing_checkpoint_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.pt"), "--name", "m", "--repository", str(tmp_path)]) == 2
    assert "nope.pt" in capsys.readouterr().out


@pytest.mark.parametrize("architecture", ["stacked"])
def test_cuda_provider_runs_or_exits_2(
    onnx_model: onnx.ModelProto, checkpoint: Path, tmp_path: Path
) -> None:
    try:
        create_session(onnx_model.SerializeToString(), "cuda", 0)
        expected = 0
    except ProviderUnavailableError:
        expected = 2
    argv = [str(checkpoint), "--name", "m", "--repository", str(tmp_path), "--provider", "cuda"]
    assert main([*argv, *FAST]) == expected


@pytest.mark.slow
def test_the_module_runs_as_a_program(checkpoint: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    command = [sys.executable, "-m", "export", str(checkpoint), "--name", "m"]
    result = subprocess.run(
        [*command, "--repository", str(repo), *FAST],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (repo / "m" / "1" / "model.onnx").is_file()
