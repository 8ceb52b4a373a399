"""torch ``LSTMClassifier`` → ONNX with real variable-length semantics, verified, written into a
Triton-layout model repository (see ``docs/model-contract.md``).

Modules (the graph's names, the session factory and the provider choice are the top-level
``contract`` package's): ``graph`` (the ONNX builder), ``reference`` (torch's
and ONNX Runtime's outputs under those names, and the random feeds they are compared on),
``verify`` (the checks), ``metadata``, ``repository`` (the Triton layout), ``exporter`` (build,
verify, write); the commands ``cli`` (``python -m export`` and what every command shares),
``defaults`` (``python -m export.defaults``) and ``from_tf`` (``python -m export.from_tf``, on
top of the ``tf1_checkpoint`` importer beside this package).

Public API (imported lazily, so ``import export`` and ``python -m export --help`` stay cheap)::

    export_model(model, repository_dir, name, version=None, *, source_sha256=None, verify=None,
                 max_batch_size=256, opset=21) -> ExportResult
    export_checkpoint(checkpoint, repository_dir, name, version=None, *, verify=None,
                      max_batch_size=256, opset=21) -> ExportResult
    build_onnx_model(model, *, opset=21) -> onnx.ModelProto
    verify_onnx(onnx_model, torch_model, settings=None) -> VerificationReport
    VerifySettings, VerificationReport, VerificationError, ProviderUnavailableError
    read_metadata(path_or_proto) -> dict[str, str]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contract.providers import ProviderUnavailableError
    from export.exporter import ExportResult, export_checkpoint, export_model
    from export.graph import build_onnx_model
    from export.metadata import read_metadata
    from export.verify import (
        VerificationError,
        VerificationReport,
        VerifySettings,
        verify_onnx,
    )

_LAZY = {
    "ExportResult": "export.exporter",
    "export_checkpoint": "export.exporter",
    "export_model": "export.exporter",
    "build_onnx_model": "export.graph",
    "read_metadata": "export.metadata",
    "ProviderUnavailableError": "contract.providers",
    "VerificationError": "export.verify",
    "VerificationReport": "export.verify",
    "VerifySettings": "export.verify",
    "verify_onnx": "export.verify",
}

__all__ = [
    "ExportResult",
    "ProviderUnavailableError",
    "VerificationError",
    "VerificationReport",
    "VerifySettings",
    "build_onnx_model",
    "export_checkpoint",
    "export_model",
    "read_metadata",
    "verify_onnx",
]


def __getattr__(name: str) -> Any:
    # PEP 562: torch, onnx and onnxruntime load on first use, not on ``import export``.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
