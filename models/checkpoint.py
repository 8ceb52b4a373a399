"""Checkpoints: weights plus the architecture config, label names and training record.

A checkpoint is a ``torch.save``d dict of plain types and tensors only, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs when a checkpoint is read).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from models.architectures import LSTMClassifier, LSTMClassifierConfig

CHECKPOINT_FORMAT = "lstm-serving/checkpoint-v1"


def save_checkpoint(
    path: str | Path, model: LSTMClassifier, record: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (weights + config) and a JSON-like ``record`` (metrics, settings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "record": record or {},
    }
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[LSTMClassifier, dict[str, Any]]:
    """Read a checkpoint written by ``save_checkpoint``: ``(model in eval mode, record)``."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # not a torch file, or one holding more than plain types
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    model = LSTMClassifier(LSTMClassifierConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, dict(payload["record"])


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (recorded in exports as the source checkpoint's hash)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
