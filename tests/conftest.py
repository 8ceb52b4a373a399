"""Fixtures shared by every test package: a tiny model repository exported through export/."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from export.exporter import export_model
from models.architectures import LSTMClassifier, LSTMClassifierConfig

FEATURES = 5
LABELS = ("a", "b", "c")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_bi`` (bidirectional [8, 8]) and ``tiny_uni`` (stacked [8, 12]), F=5, 3 classes."""
    repo = tmp_path_factory.mktemp("model_repository")
    torch.manual_seed(0)
    for name, sizes, bidirectional in (("tiny_bi", (8, 8), True), ("tiny_uni", (8, 12), False)):
        config = LSTMClassifierConfig(FEATURES, sizes, len(LABELS), bidirectional, LABELS)
        export_model(LSTMClassifier(config), repo, name, 1)
    return repo
