"""The names that ``docs/model-contract.md`` fixes, in one place (stdlib only: no ONNX Runtime,
no torch).

Shapes: ``B`` batch, ``T`` padded time, ``F`` input features, ``H_n`` hidden width of layer
``n``, ``dirs`` 1 or 2, ``D = dirs * H_last``, ``C`` classes.
"""

from __future__ import annotations

import re

CONTRACT = "lstm-serving/onnx-v1"

INPUTS = "inputs"
"""float32 ``(B, T, F)``: the padded batch."""
LENGTHS = "lengths"
"""int32 ``(B,)``: real lengths, wired to every LSTM node's ``sequence_lens``."""
LOGITS = "logits"
"""float32 ``(B, C)``."""
PROBS = "probs"
"""float32 ``(B, C)``: softmax of ``logits``."""
OUTPUTS = "outputs"
"""float32 ``(B, T, D)``: the top layer's per-step outputs, zero at ``t >= lengths[b]``."""

BATCH_DIM = "batch"
TIME_DIM = "time"

MODEL_FILENAME = "model.onnx"
CONFIG_FILENAME = "config.pbtxt"

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

METADATA_KEYS = (
    "name",
    "version",
    "architecture",
    "layer_sizes",
    "bidirectional",
    "topology",
    "input_size",
    "num_classes",
    "labels",
    "max_length_verified",
    "source_checkpoint_sha256",
    "parity",
    "precision",
    "accuracy",
    "contract",
)


def initial_c(layer: int) -> str:
    """Name of layer ``layer``'s optional initial cell state, ``(dirs, B, H_n)``."""
    return f"initial_c_{layer}"


def initial_h(layer: int) -> str:
    """Name of layer ``layer``'s optional initial hidden state, ``(dirs, B, H_n)``."""
    return f"initial_h_{layer}"


def final_c(layer: int) -> str:
    """Name of layer ``layer``'s final cell state output, ``(dirs, B, H_n)``."""
    return f"final_c_{layer}"


def final_h(layer: int) -> str:
    """Name of layer ``layer``'s final hidden state output, ``(dirs, B, H_n)``."""
    return f"final_h_{layer}"


def output_names(num_layers: int) -> list[str]:
    """Every graph output, in graph order."""
    names = [LOGITS, PROBS, OUTPUTS]
    for n in range(num_layers):
        names += [final_c(n), final_h(n)]
    return names


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is a valid repository model name, else raise ``ValueError``."""
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"invalid model name {name!r}: expected {MODEL_NAME_PATTERN.pattern} "
            "(a letter or digit, then up to 63 letters, digits, '_', '.' or '-')"
        )
    return name


def validate_version(version: int) -> int:
    """Return ``version`` if it is a positive integer, else raise ``ValueError``."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"invalid model version {version!r}: expected a positive integer")
    return version
