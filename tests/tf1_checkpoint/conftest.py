"""Fixtures for the TF 1.x import tests (``tf1_copy``, a writable copy of a shipped checkpoint,
is in ``tests/conftest.py``: ``tests/export/test_from_tf.py`` uses it too)."""

from __future__ import annotations

import pytest

from tests.support.tf1_shipped import MODELS


@pytest.fixture(params=MODELS)
def model_name(request: pytest.FixtureRequest) -> str:
    """Each shipped checkpoint in turn."""
    return request.param
