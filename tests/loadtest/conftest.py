"""Fixtures of the load tester's tests: the shared tiny repository, the service's ASGI app over
it, a real server process on a free port, and a phase result built by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from loadtest.engine import PhaseResult
from service.frontend.app import create_app
from tests.support.asgi import asgi_client
from tests.support.servers import Server
from tests.support.tiny_repository import MODEL, tiny_settings


@pytest.fixture(scope="session")
def repository(model_repository: Path) -> Path:
    """The tiny repository (``MODEL``, ``tiny_bi``: bidirectional [8, 8], F=5, 3 classes)."""
    return model_repository


@pytest.fixture(scope="session")
def model_file(repository: Path) -> Path:
    return repository / MODEL / "1" / "model.onnx"


@pytest.fixture
async def service_client(repository: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(tiny_settings(repository))) as http:
        yield http


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[Server]:
    running = Server(repository, log_level="warning")
    yield running
    running.stop()


@pytest.fixture
def phase_result() -> PhaseResult:
    """Six requests: 4 ok (one with 3 sequences), one 429, one with no response; the last
    answer at 2.0 s."""
    return PhaseResult(
        sent=np.array([0.0, 0.5, 1.0, 1.5, 1.6, 1.7]),
        latency=np.array([0.010, 0.020, 0.030, 0.5, 0.001, 0.3]),
        status=np.array([200, 200, 200, 200, 429, 0]),
        sequences=np.array([1, 1, 3, 1, 1, 1]),
        pool_index=np.arange(6),
        lag=np.zeros(6),
        measure_start=100.0,
        transport_errors={"ServerDisconnectedError": 1},
        client_cpu_s=0.6,
    )
