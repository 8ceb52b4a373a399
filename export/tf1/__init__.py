"""Import TensorFlow 1.x LSTM classifiers from their checkpoints, without TensorFlow.

``TFCheckpoint`` reads a V2 checkpoint (``PREFIX.index`` + ``PREFIX.data-*``); a description
(``ModelDescription``, JSON) says how its variables form an ``LSTMClassifier``;
``build_model`` puts the two together (it imports torch; the rest needs only numpy). All
failures raise ``TF1ImportError`` subclasses. Typical use::

    from export.tf1 import build_model
    folder = "tests/data/tf1/bidi_lstm"
    model = build_model(folder, f"{folder}/manifest.json")  # or no description: guessed
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from export.tf1.checkpoint import TensorEntry, TFCheckpoint, resolve_prefix
from export.tf1.description import (
    CellDescription,
    ModelDescription,
    load_description,
    parse_description,
)
from export.tf1.errors import (
    CheckpointNotFoundError,
    ChecksumError,
    CorruptCheckpointError,
    DescriptionError,
    MappingError,
    PartitionedVariableError,
    TF1ImportError,
    UnsupportedCheckpointError,
    UnsupportedDTypeError,
    VariableNotFoundError,
)
from export.tf1.guess import guess_description
from export.tf1.variables import VariableInfo, format_variables, list_variables

if TYPE_CHECKING:
    from export.tf1.mapping import MappedWeights, build_model, map_variables

# Reading a checkpoint needs numpy only; building the model needs torch, loaded on first use.
_LAZY = dict.fromkeys(("MappedWeights", "build_model", "map_variables"), "export.tf1.mapping")

__all__ = [
    "CellDescription",
    "CheckpointNotFoundError",
    "ChecksumError",
    "CorruptCheckpointError",
    "DescriptionError",
    "MappedWeights",
    "MappingError",
    "ModelDescription",
    "PartitionedVariableError",
    "TF1ImportError",
    "TFCheckpoint",
    "TensorEntry",
    "UnsupportedCheckpointError",
    "UnsupportedDTypeError",
    "VariableInfo",
    "VariableNotFoundError",
    "build_model",
    "format_variables",
    "guess_description",
    "list_variables",
    "load_description",
    "map_variables",
    "parse_description",
    "resolve_prefix",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'export.tf1' has no attribute {name!r}")
