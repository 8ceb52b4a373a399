"""The error raised when a user's torch module cannot be imported as an ``LSTMClassifier``."""

from __future__ import annotations


class TorchImportError(ValueError):
    """The module, its state_dict or its forward cannot be exported; the message is one line
    that names the problem (the import path, the layer's attribute path and type, the key).

    A ``ValueError``, so ``export.cli.run_export`` reports it with exit status 2 like the other
    unusable inputs."""


def one_line(error: BaseException) -> str:
    """``Type: message`` of an exception the user's code raised, its message on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
