"""A real server (``python -m service`` on a free port) over the tiny repository with examples,
shared by the client's and the command's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ort_reference import Reference
from tests.support.servers import Server


@pytest.fixture(scope="package")
def server(examples_repository: Path) -> Iterator[Server]:
    running = Server(examples_repository)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
def reference(model_repository: Path) -> Reference:
    """``tiny_bi`` and ``tiny_uni``, each sequence run alone through in-process ORT."""
    return Reference(model_repository)
