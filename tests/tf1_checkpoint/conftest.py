"""Fixtures for the TF 1.x import tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .shipped import DATA_DIR, MODELS


@pytest.fixture(params=MODELS)
def model_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def copied(tmp_path: Path) -> Callable[[str], Path]:
    """``copied(name)``: a writable copy of a shipped checkpoint folder, in ``tmp_path``."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(DATA_DIR / name, target)
        for path in target.iterdir():
            path.chmod(0o644)  # the shared originals are read-only
        return target

    return copy
