"""``/v1/models`` gives the model's metadata as JSON values: the ``metadata_props`` that hold
JSON objects or lists (``parity``, ``layer_sizes``, ``labels``) are objects and lists in the
response, not JSON text inside strings."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from export.metadata import read_metadata
from service.runtime.session import decode_metadata
from tests.service.conftest import LABELS

pytestmark = pytest.mark.anyio


async def test_v1_models_returns_json_metadata_as_objects(
    client: httpx.AsyncClient, model_repository: Path
) -> None:
    stored = read_metadata(model_repository / "tiny_bi" / "1" / "model.onnx")
    listing = (await client.get("/v1/models")).json()["models"]
    (listed,) = [m["metadata"] for m in listing if m["name"] == "tiny_bi"]
    single = (await client.get("/v1/models/tiny_bi")).json()["metadata"]
    for metadata in (listed, single):
        assert isinstance(metadata["parity"], dict)
        assert metadata["parity"] == json.loads(stored["parity"])
        assert metadata["layer_sizes"] == [8, 8]
        assert metadata["labels"] == list(LABELS)
        # scalars stay the strings stored: a version is a name, "true" is the contract's text
        assert metadata["version"] == "1" and metadata["bidirectional"] == "true"
        assert metadata["source_checkpoint_sha256"] == stored["source_checkpoint_sha256"]
        assert set(metadata) == set(stored)


def test_only_json_objects_and_lists_are_decoded() -> None:
    props = {
        "parity": '{"limit": 1e-05, "checks": {"padding": 0.0}}',
        "layer_sizes": " [128, 256]",
        "broken": "[not json",
        "number": "12",
        "flag": "false",
        "quoted": '"text"',
        "empty": "",
    }
    assert decode_metadata(props) == {
        "parity": {"limit": 1e-05, "checks": {"padding": 0.0}},
        "layer_sizes": [128, 256],
        "broken": "[not json",
        "number": "12",
        "flag": "false",
        "quoted": '"text"',
        "empty": "",
    }
