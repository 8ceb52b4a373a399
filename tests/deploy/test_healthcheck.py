"""docker/healthcheck.py (the image's HEALTHCHECK) against a stand-in server on a free loopback
port: ready, not ready, nothing listening, and the API key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.deploy import HEALTHCHECK


class StandIn(ThreadingHTTPServer):
    status = 200
    seen: list[tuple[str, str | None]]


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        body = b'{"ready": true}' if self.server.status == 200 else b'{"ready": false}'
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn(("127.0.0.1", 0), Handler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_check(port: int, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LSTM_SERVING_")}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env={**clean, "LSTM_SERVING_PORT": str(port), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_ready_is_healthy(stand_in: StandIn) -> None:
    result = run_check(stand_in.server_address[1])
    assert result.returncode == 0, result.stdout
    assert stand_in.seen == [("/v2/health/ready", None)]


def test_not_ready_is_unhealthy(stand_in: StandIn) -> None:
    stand_in.status = 503
    result = run_check(stand_in.server_address[1])
    assert result.returncode == 1
    assert "503" in result.stdout


def test_nothing_listening_is_unhealthy() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        result = run_check(port)
    assert result.returncode == 1
    assert "not ready" in result.stdout


def test_sends_the_api_key_when_one_is_set(stand_in: StandIn) -> None:
    result = run_check(stand_in.server_address[1], LSTM_SERVING_API_KEY="s3cret")
    assert result.returncode == 0
    assert stand_in.seen == [("/v2/health/ready", "Bearer s3cret")]
