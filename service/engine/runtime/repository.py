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


def valid_version(name: str) -> bool:
    """A version folder is a positive integer in ASCII digits (``"²".isdigit()`` is true, but
    ``int("²")`` raises)."""
    return name.isascii() and name.isdigit() and int(name) > 0


def discover(repository: Path) -> list[ModelLocation]:
    """Every ``name/version/model.onnx`` under ``repository``, sorted by name then version.

    An entry that is not a model (a stray file or folder, a name or version that is not valid,
    a folder that cannot be read) is skipped with a log line: it never stops the others.
    """
    root = repository.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {repository} is not a directory")
    found = []
    for model_dir in sorted(root.iterdir()):
        if not model_dir.is_dir():
            continue
        if not valid_model_name(model_dir.name):
            log.warning("skipping %r: not a valid model name", model_dir.name)
            continue
        try:
            found.extend(_versions(root, model_dir))
        except OSError as error:
            log.warning("skipping model %s: %s", model_dir.name, error)
    return found


def _versions(root: Path, model_dir: Path) -> list[ModelLocation]:
    found = []
    for version_dir in sorted(model_dir.iterdir(), key=lambda p: (len(p.name), p.name)):
        try:
            location = _version(root, model_dir, version_dir)
        except OSError as error:  # unreadable: a permission, a broken mount
            log.warning("skipping %s: %s", version_dir, error)
            continue
        if location is not None:
            found.append(location)
    return found


def _version(root: Path, model_dir: Path, version_dir: Path) -> ModelLocation | None:
    if not version_dir.is_dir():
        return None  # config.pbtxt, labels, notes
    if not valid_version(version_dir.name):
        log.warning(
            "skipping %s/%r: a version folder is a positive integer",
            model_dir.name,
            version_dir.name,
        )
        return None
    path = version_dir / MODEL_FILE
    if not path.is_file():
        log.warning("skipping %s/%s: it has no %s", model_dir.name, version_dir.name, MODEL_FILE)
        return None
    if not path.resolve().is_relative_to(root):
        log.warning("skipping %s: it links outside the repository", path)
        return None
    return ModelLocation(model_dir.name, version_dir.name, path)
