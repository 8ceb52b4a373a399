"""The errors raised when a TensorFlow 1.x checkpoint cannot be imported.

Everything derives from ``TF1ImportError`` so a caller (the CLI) catches one class and prints
its message; the subclasses say whether the files are damaged, use something this reader does
not support, are missing, or cannot be mapped onto an ``LSTMClassifier``.
"""

from __future__ import annotations


class TF1ImportError(Exception):
    """Base class: a TF 1.x checkpoint could not be read or mapped."""


class CheckpointNotFoundError(TF1ImportError):
    """No checkpoint at the given path, or one of its files (index, a data shard) is missing."""


class CorruptCheckpointError(TF1ImportError):
    """The files are damaged: bad magic, truncated blocks, malformed records, CRC mismatches."""


class ChecksumError(CorruptCheckpointError):
    """A block or tensor's CRC32C does not match; ``what`` names the tensor or block."""

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


class UnsupportedCheckpointError(TF1ImportError):
    """A valid checkpoint that uses something this reader does not implement (V1 format,
    compressed blocks, big-endian data)."""


class UnsupportedDTypeError(UnsupportedCheckpointError):
    """A tensor's dtype has no numpy equivalent here (strings, resources, quantized types)."""


class PartitionedVariableError(UnsupportedCheckpointError):
    """A variable saved in slices (``tf.compat.v1.fixed_size_partitioner`` and friends)."""


class MappingError(TF1ImportError):
    """The checkpoint's variables (or the description) cannot become an ``LSTMClassifier``:
    missing or misshapen variables, peepholes, projections, mismatched directions."""


class VariableNotFoundError(TF1ImportError, KeyError):
    """A variable name that the checkpoint does not hold."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class DescriptionError(MappingError):
    """The JSON description itself is malformed (wrong types, unknown cell type, bad values)."""
