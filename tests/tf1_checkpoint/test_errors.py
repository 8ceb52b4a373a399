"""``tf1_checkpoint.errors``: one hierarchy, so the CLI catches ``TF1ImportError`` alone."""

from __future__ import annotations

import pytest

from tf1_checkpoint import (
    CheckpointNotFoundError,
    ChecksumError,
    CorruptCheckpointError,
    PartitionedVariableError,
    TF1ImportError,
    UnsupportedCheckpointError,
    UnsupportedDTypeError,
    VariableNotFoundError,
)


# The reader's errors, the list tf1_checkpoint/checkpoint.py imports (the mapping's own,
# MappingError and DescriptionError, are not listed here).
@pytest.mark.parametrize(
    "error",
    [
        CheckpointNotFoundError,
        ChecksumError,
        CorruptCheckpointError,
        PartitionedVariableError,
        UnsupportedCheckpointError,
        UnsupportedDTypeError,
        VariableNotFoundError,
    ],
)
def test_one_error_hierarchy(error: type) -> None:
    assert issubclass(error, TF1ImportError)
