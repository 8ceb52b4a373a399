"""Fixtures of the bench tests: the shared tiny model (``tiny_bi`` of the ``model_repository``
fixture, ``tests.support.tiny_repository``: bidirectional [8, 8], F=5, 3 classes) and the
service's settings for it on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings


@pytest.fixture(scope="session")
def tiny_model(model_repository: Path) -> Path:
    """``tiny_bi``'s ONNX file."""
    return model_repository / "tiny_bi" / "1" / "model.onnx"


@pytest.fixture
def cpu_settings(model_repository: Path) -> Settings:
    """The service's settings over the tiny repository on the CPU."""
    return Settings(model_repository=model_repository, provider="cpu")
