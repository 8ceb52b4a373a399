"""The tiny model repository of the shared ``model_repository`` fixture (``tests/conftest.py``),
and the service's settings over it.

Two models, exported through ``export/`` from random weights (seed 0), F = ``FEATURES``
features and the classes ``LABELS``: ``tiny_bi`` (bidirectional [8, 8]; ``MODEL``, the one the
load and bench tests drive) and ``tiny_uni`` (stacked [8, 12]).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from export.exporter import export_model
from models.architectures import LSTMClassifier, LSTMClassifierConfig
from service.settings import Settings

FEATURES = 5
LABELS = ("a", "b", "c")
MODEL = "tiny_bi"


def export_tiny_models(repo: Path) -> Path:
    """``tiny_bi`` and ``tiny_uni`` as version 1 in ``repo``; returns ``repo``."""
    torch.manual_seed(0)
    for name, sizes, bidirectional in (("tiny_bi", (8, 8), True), ("tiny_uni", (8, 12), False)):
        config = LSTMClassifierConfig(FEATURES, sizes, len(LABELS), bidirectional, LABELS)
        export_model(LSTMClassifier(config), repo, name, 1)
    return repo


def tiny_settings(repo: Path, **overrides: Any) -> Settings:
    """The service on the CPU over ``repo``: one warm-up shape (fast start) and limits sized for
    the tests' requests (sequences up to 300 steps, 4096 tokens a batch); ``overrides`` win."""
    values: dict[str, Any] = {
        "model_repository": repo,
        "provider": "cpu",
        "warmup_batch_sizes": [1],
        "warmup_lengths": [3],
        "max_sequence_length": 300,
        "max_batch_tokens": 4096,
    }
    return Settings(**(values | overrides))
