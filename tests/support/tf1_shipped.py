"""The TF 1.x checkpoints shipped as test data and their recorded outputs: the three of
``tests/data/tf1`` (a byte copy of shared data) and ``bidi_multi_lstm`` of
``tests/data/tf1_bidi_multi`` (one ``MultiRNNCell`` stack per direction)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

_DATA = Path(__file__).resolve().parents[1] / "data"
DATA_DIR = _DATA / "tf1"
BIDI_MULTI_DIR = _DATA / "tf1_bidi_multi"
_FOLDERS = {
    "basic_lstm": DATA_DIR,
    "multi_lstm": DATA_DIR,
    "bidi_lstm": DATA_DIR,
    "bidi_multi_lstm": BIDI_MULTI_DIR,
}
MODELS = tuple(_FOLDERS)


def model_dir(name: str) -> Path:
    """The folder of shipped checkpoint ``name`` (``model.ckpt.*``, ``manifest.json``,
    ``expected.npz``)."""
    return _FOLDERS[name] / name


def load_manifest(name: str) -> dict[str, Any]:
    return json.loads((model_dir(name) / "manifest.json").read_text())


def load_expected(name: str) -> dict[str, np.ndarray]:
    with np.load(model_dir(name) / "expected.npz") as data:
        return dict(data)
