"""Fixtures shared by every test package: the tiny model repository exported through export/
(``tests.support.tiny_repository`` says what is in it), a copy of it with example sequences, and
writable copies of the shipped TF 1.x checkpoints."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.examples_repository import with_examples
from tests.support.tf1_shipped import model_dir
from tests.support.tiny_repository import export_tiny_models


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_bi`` (bidirectional [8, 8]) and ``tiny_uni`` (stacked [8, 12]), F=5, 3 classes."""
    return export_tiny_models(tmp_path_factory.mktemp("model_repository"))


@pytest.fixture(scope="session")
def examples_repository(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny repository with ``examples.json`` next to each model, labelled with the class
    in-process ORT gives each example (``tests.support.examples_repository``)."""
    return with_examples(model_repository, tmp_path_factory.mktemp("examples") / "repository")


@pytest.fixture
def tf1_copy(tmp_path: Path) -> Callable[[str], Path]:
    """``tf1_copy(name)``: a writable copy of a shipped TF 1.x checkpoint folder
    (``tests.support.tf1_shipped.model_dir``), in ``tmp_path``."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(model_dir(name), target)
        for path in target.iterdir():
            path.chmod(0o644)  # the shared originals are read-only
        return target

    return copy
