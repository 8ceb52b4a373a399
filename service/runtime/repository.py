"""Finding models in a repository: ``<repo>/<name>/<version>/model.onnx`` (Triton's layout).

Only ``model.onnx`` files inside the repository are considered (no links leading out of it, no
pickles): a model file is data that ONNX Runtime parses, never code that runs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class ModelLocation:
    name: str
    version: str
    path: Path


def valid_model_name(name: str) -> bool:
    return bool(MODEL_NAME.fullmatch(name)) and name not in (".", "..")


def discover(repository: Path) -> list[ModelLocation]:
    """Every ``name/version/model.onnx`` under ``repository``, sorted by name then version."""
    root = repository.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {repository} is not a directory")
    found = []
    for model_dir in sorted(root.iterdir()):
        if not model_dir.is_dir():
            continue
        if not valid_model_name(model_dir.name):
            log.warning("skipping %s: not a valid model name", model_dir.name)
            continue
        for version_dir in sorted(model_dir.iterdir(), key=lambda p: (len(p.name), p.name)):
            if not (
                version_dir.is_dir() and version_dir.name.isdigit() and int(version_dir.name) > 0
            ):
                continue
            path = version_dir / MODEL_FILE
            if not path.is_file():
                continue
            if not path.resolve().is_relative_to(root):
                log.warning("skipping %s: it links outside the repository", path)
                continue
            found.append(ModelLocation(model_dir.name, version_dir.name, path))
    return found
