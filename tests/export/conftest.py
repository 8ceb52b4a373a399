"""Fixtures: one ``Case`` (torch model, ONNX graph, ORT session) per architecture."""

from __future__ import annotations

import pytest

from tests.export.helpers import Case, make_case


@pytest.fixture(scope="session")
def stacked() -> Case:
    return make_case("stacked", bidirectional=False, layer_sizes=(8, 12))


@pytest.fixture(scope="session")
def bidirectional() -> Case:
    return make_case("bidirectional", bidirectional=True, layer_sizes=(8, 8))


@pytest.fixture(params=["stacked", "bidirectional"])
def case(request: pytest.FixtureRequest) -> Case:
    """Each architecture in turn."""
    return request.getfixturevalue(request.param)
