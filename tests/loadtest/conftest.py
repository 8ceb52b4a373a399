"""Fixtures: the service tests' tiny model repository, the service's ASGI app over it, and a
real server process on a free port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from service.app import create_app
from service.settings import Settings
from tests.conftest import FEATURES, LABELS  # noqa: F401 (re-exported for the tests)

MODEL = "tiny_bi"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repository(model_repository: Path) -> Path:
    """The service tests' tiny repository (``tiny_bi``: bidirectional [8, 8], F=5, 3 classes)."""
    return model_repository


@pytest.fixture(scope="session")
def model_file(repository: Path) -> Path:
    return repository / MODEL / "1" / "model.onnx"


def settings(repo: Path) -> Settings:
    return Settings(
        model_repository=repo,
        provider="cpu",
        warmup_batch_sizes=[1],
        warmup_lengths=[3],
        max_sequence_length=300,
        max_batch_tokens=4096,
    )


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` with its lifespan running, reached through httpx's ASGI transport."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture
async def service_client(repository: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(settings(repository))) as http:
        yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server command on a free port, ready when ``/v2/health/ready`` says 200."""

    def __init__(self, module: str, repo: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", module, "--model-repository", str(repo),
                   "--port", str(self.port), *flags]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise RuntimeError(f"{module} exited early:\n{output}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling a readiness condition, bounded by the deadline
        self.stop()
        raise RuntimeError(f"{module} did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


SERVICE_FLAGS = ("--provider", "cpu", "--warmup-batch-sizes", "[1]", "--warmup-lengths", "[4]",
                 "--log-format", "text", "--log-level", "warning")  # fmt: skip


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    running = ServerProcess("service", repository, *SERVICE_FLAGS)
    yield running
    running.stop()
