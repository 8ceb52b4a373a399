"""Import TensorFlow 1.x LSTM classifiers from their checkpoints, without TensorFlow.

The importer beside ``export/`` (the exporter): a TF 1.x checkpoint comes in, an
``LSTMClassifier`` of ``models`` comes out, and ``python -m export.from_tf`` exports it like any
other model. Imports point one way: ``export.from_tf`` → ``tf1_checkpoint`` → ``models``.
Modules: ``checkpoint`` (the V2 bundle: ``.index`` table and ``.data`` shards), ``table``,
``wire`` and ``crc32c`` (its formats), ``variables`` (listing), ``description`` (how the
variables form a model, JSON), ``guess`` (a description from the names), ``mapping`` (the
weights onto ``LSTMClassifier``), ``errors``.

``TFCheckpoint`` reads a V2 checkpoint (``PREFIX.index`` + ``PREFIX.data-*``); a description
(``ModelDescription``, JSON) says how its variables form an ``LSTMClassifier``;
``build_model`` puts the two together (it imports torch; the rest needs only numpy). All
failures raise ``TF1ImportError`` subclasses. Typical use::

    from tf1_checkpoint import build_model
    folder = "tests/data/tf1/bidi_lstm"
    model = build_model(folder, f"{folder}/manifest.json")  # or no description: guessed
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tf1_checkpoint.checkpoint import TensorEntry, TFCheckpoint, resolve_prefix
from tf1_checkpoint.description import (
    CellDescription,
    ModelDescription,
    load_description,
    parse_description,
)
from tf1_checkpoint.errors import (
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
from tf1_checkpoint.guess import guess_description
from tf1_checkpoint.variables import VariableInfo, format_variables, list_variables

if TYPE_CHECKING:
    from tf1_checkpoint.mapping import MappedWeights, build_model, map_variables

# Reading a checkpoint needs numpy only; building the model needs torch, loaded on first use.
_LAZY = dict.fromkeys(("MappedWeights", "build_model", "map_variables"), "tf1_checkpoint.mapping")

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
    # PEP 562, the same three lines as in export/__init__.py: too few to share through a module
    # that both packages would have to import.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tf1_checkpoint' has no attribute {name!r}")
