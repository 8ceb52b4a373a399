"""The three TF 1.x checkpoints shipped in ``tests/data/tf1`` and their recorded outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "tf1"
MODELS = ("basic_lstm", "multi_lstm", "bidi_lstm")


def load_manifest(name: str) -> dict[str, Any]:
    return json.loads((DATA_DIR / name / "manifest.json").read_text())


def load_expected(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA_DIR / name / "expected.npz") as data:
        return dict(data)
