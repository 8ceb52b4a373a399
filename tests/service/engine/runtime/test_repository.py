"""Model discovery (``service.engine.runtime.repository``): only ``name/version/model.onnx`` inside
the repository, valid names only; what is skipped is logged, and stops no model of the app."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from service.engine.runtime.repository import discover, valid_model_name
from tests.support.service_app import app_client
from tests.support.tiny_repository import FEATURES, tiny_settings


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"onnx")
    return path


def test_finds_versions_in_numeric_order(tmp_path: Path) -> None:
    for version in ("1", "2", "10"):
        touch(tmp_path / "lstm" / version / "model.onnx")
    found = discover(tmp_path)
    assert [(m.name, m.version) for m in found] == [("lstm", "1"), ("lstm", "2"), ("lstm", "10")]


def test_skips_what_is_not_a_model(tmp_path: Path) -> None:
    touch(tmp_path / "ok" / "1" / "model.onnx")
    touch(tmp_path / "ok" / "0" / "model.onnx")  # versions are positive
    touch(tmp_path / "ok" / "latest" / "model.onnx")
    touch(tmp_path / "ok" / "2" / "model.pkl")  # only model.onnx, never a pickle
    touch(tmp_path / ".hidden" / "1" / "model.onnx")
    touch(tmp_path / "bad name" / "1" / "model.onnx")
    (tmp_path / "ok" / "config.pbtxt").write_text("name: 'ok'")
    assert [(m.name, m.version) for m in discover(tmp_path)] == [("ok", "1")]


def test_a_link_leading_out_of_the_repository_is_not_loaded(tmp_path: Path) -> None:
    outside = touch(tmp_path / "elsewhere" / "model.onnx")
    repo = tmp_path / "repo"
    (repo / "sneaky" / "1").mkdir(parents=True)
    (repo / "sneaky" / "1" / "model.onnx").symlink_to(outside)
    touch(repo / "fine" / "1" / "model.onnx")
    assert [m.name for m in discover(repo)] == ["fine"]


@pytest.mark.parametrize("name", ["..", ".", "../etc", "a/b", "", "x" * 65, "-lead", "ok\n"])
def test_invalid_model_names(name: str) -> None:
    assert not valid_model_name(name)


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        discover(tmp_path / "missing")


@pytest.mark.parametrize("stray", ["²", "١", "x1", "-1", "0"])
def test_a_stray_version_folder_is_skipped_with_a_log_line(
    tmp_path: Path, stray: str, caplog: pytest.LogCaptureFixture
) -> None:
    # "²".isdigit() and "١".isdigit() (Arabic-Indic one) are true, but int("²") raises.
    touch(tmp_path / "bilstm" / "1" / "model.onnx")
    (tmp_path / "bilstm" / stray).mkdir()
    touch(tmp_path / "other" / "2" / "model.onnx")
    with caplog.at_level(logging.WARNING, logger="service.engine.runtime.repository"):
        found = discover(tmp_path)
    assert [(m.name, m.version) for m in found] == [("bilstm", "1"), ("other", "2")]
    assert any(stray in record.getMessage() for record in caplog.records), caplog.text


def test_an_unreadable_model_folder_is_skipped_and_the_others_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    touch(tmp_path / "locked" / "1" / "model.onnx")
    touch(tmp_path / "open" / "1" / "model.onnx")
    iterdir = Path.iterdir

    def refusing(self: Path):  # type: ignore[no-untyped-def]
        if self.name == "locked":  # chmod 000 does not stop root, so refuse here
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", refusing)
    with caplog.at_level(logging.WARNING, logger="service.engine.runtime.repository"):
        assert [m.name for m in discover(tmp_path)] == ["open"]
    assert "locked" in caplog.text


@pytest.mark.anyio
async def test_a_stray_version_folder_stops_no_model(
    model_repository: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repository, repo)
    (repo / "tiny_bi" / "²").mkdir()  # "²".isdigit() is true; int("²") raised at start-up
    with caplog.at_level(logging.WARNING, logger="service.engine.runtime.repository"):
        async with app_client(tiny_settings(repo, warmup=False)) as http:
            assert (await http.get("/v2/health/ready")).status_code == 200
            ok = await http.post(
                "/v1/models/tiny_bi/predict", json={"sequences": [[[0.1] * FEATURES]]}
            )
            assert ok.status_code == 200
    assert "²" in caplog.text
