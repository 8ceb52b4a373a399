"""Fixtures of the service's tests: the in-process ORT reference over the tiny model repository
(``tests/conftest.py``), the app served through its ASGI interface with its lifespan, and the
slow model of the tests on real servers. What they are built from lives in ``tests/support``
(``ort_reference``, ``service_app``, ``tiny_repository``, ``wide_model``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.ort_reference import Reference
from tests.support.service_app import app_client
from tests.support.tiny_repository import tiny_settings
from tests.support.wide_model import export_wide_model


@pytest.fixture(scope="session")
def reference(model_repository: Path) -> Reference:
    """``tiny_bi`` and ``tiny_uni``, each sequence run alone through in-process ORT."""
    return Reference(model_repository)


@pytest.fixture
async def client(model_repository: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app over the tiny repository (``tiny_settings``), its lifespan running."""
    async with app_client(tiny_settings(model_repository)) as http:
        yield http


@pytest.fixture(scope="session")
def wide_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding only ``tests.support.wide_model.MODEL``: slow enough per run to keep
    a queue while a test looks."""
    return export_wide_model(tmp_path_factory.mktemp("wide_repository"))


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """16 threads to send requests from."""
    with ThreadPoolExecutor(16) as executor:
        yield executor
