"""The ``metadata_props`` of an exported model (``docs/model-contract.md``): all values strings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx

from contract.names import CONTRACT, METADATA_KEYS
from models.architectures import LSTMClassifier, LSTMClassifierConfig


def state_dict_sha256(model: LSTMClassifier) -> str:
    """Hex SHA-256 of a model's weights (names, dtypes, shapes, bytes): the source hash of an
    export made from a model object rather than a checkpoint file."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{key}|{array.dtype}|{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def build_metadata(
    config: LSTMClassifierConfig,
    *,
    name: str,
    version: int,
    source_sha256: str,
    max_length_verified: int,
    parity_json: str,
    precision: str = "fp32",
    accuracy_json: str = "{}",
) -> dict[str, str]:
    """Every contract key, in contract order."""
    metadata = {
        "name": name,
        "version": str(version),
        "architecture": config.architecture,
        "layer_sizes": json.dumps(list(config.layer_sizes)),
        "bidirectional": "true" if config.bidirectional else "false",
        # "stacked" or "per_direction" (LSTMClassifierConfig.topology): how bidirectional
        # layers read the layer below; "stacked" for every unidirectional model.
        "topology": config.topology,
        "input_size": str(config.input_size),
        "num_classes": str(config.num_classes),
        "labels": json.dumps(list(config.labels), ensure_ascii=False),
        "max_length_verified": str(max_length_verified),
        "source_checkpoint_sha256": source_sha256,
        "parity": parity_json,
        # fp32, int8 or fp16 (export.precision); the test accuracy of this graph and of the
        # fp32 graph it was made from, on JapaneseVowels ({} for a model of another shape).
        "precision": precision,
        "accuracy": accuracy_json,
        "contract": CONTRACT,
    }
    assert tuple(metadata) == METADATA_KEYS  # one list of keys, kept in step
    return metadata


def attach_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace ``model``'s ``metadata_props`` with ``metadata``."""
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)


def read_metadata(source: str | Path | onnx.ModelProto) -> dict[str, str]:
    """The ``metadata_props`` of a model file or proto."""
    model = source if isinstance(source, onnx.ModelProto) else onnx.load(str(source))
    return {prop.key: prop.value for prop in model.metadata_props}
