"""Property-based fuzzing of both APIs from the service's own OpenAPI schema (schemathesis),
against ``python -m service`` as a real process: whatever the generated request, no 5xx, and
every response matches the documented schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.servers import Server  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed_server(model_repository: Path) -> Iterator[Server]:
    server = Server(model_repository, "--max-sequence-length", "300")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: Server):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_5xx_and_responses_match_the_schema(case) -> None:  # type: ignore[no-untyped-def]
    # Aim half of the generated calls at a model that exists, the rest at random names.
    name = (case.path_parameters or {}).get("name")
    if isinstance(name, str) and len(name) % 2:
        case.path_parameters["name"] = "tiny_bi"
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
