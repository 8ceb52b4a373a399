"""Logs (``service.logs``): text on a terminal, JSON otherwise (``log_format=auto``, the
default), either when set; uvicorn's ``color_message`` (its message again, with ANSI colour
codes) never shows."""

from __future__ import annotations

import io
import logging
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from service.logs import configure_logging
from service.settings import Settings
from tests.support.servers import ROOT


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def log_uvicorn_line(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, fmt: str) -> str:
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("info", fmt)
    # What uvicorn logs at start-up, extra included.
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]",
        42,
        extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"},
    )
    return stream.getvalue()


def test_the_default_format_is_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LSTM_SERVING_LOG_FORMAT", raising=False)
    assert Settings().log_format == "auto"


@pytest.mark.usefixtures("restore_logging")
def test_auto_logs_json_when_not_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    line = log_uvicorn_line(monkeypatch, io.StringIO(), "auto")
    entry = orjson.loads(line)
    assert entry["message"] == "Started server process [42]"
    assert "color_message" not in entry and "\x1b" not in line


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("stream", "fmt"), [(Terminal(), "auto"), (io.StringIO(), "text")])
def test_text_logs_carry_no_colour_codes(
    monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, fmt: str
) -> None:
    line = log_uvicorn_line(monkeypatch, stream, fmt)
    assert line.rstrip().endswith("INFO uvicorn.error: Started server process [42]"), line
    assert "color_message" not in line and "\x1b" not in line


@pytest.mark.usefixtures("restore_logging")
def test_json_when_asked_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    line = log_uvicorn_line(monkeypatch, Terminal(), "json")
    assert orjson.loads(line)["logger"] == "uvicorn.error"


def run_service_logging_to(stderr: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LSTM_SERVING_LOG_FORMAT"}
    completed = subprocess.run(
        [sys.executable, "-m", "service", "--model-repository", "/nonexistent/repository"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        timeout=60,
        env=env,
    )
    assert completed.returncode == 2


def test_the_server_logs_text_to_a_terminal_and_json_to_a_pipe(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    try:
        run_service_logging_to(secondary)
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the terminal's other end is closed and all was read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
    on_terminal = b"".join(chunks).decode()
    assert " ERROR service: model repository /nonexistent/repository does not exist" in (
        on_terminal
    ), on_terminal
    with open(tmp_path / "stderr", "w+b") as piped:
        run_service_logging_to(piped.fileno())
        piped.seek(0)
        entry = orjson.loads(piped.read().splitlines()[0])
    assert entry["level"] == "error" and "does not exist" in entry["message"]
