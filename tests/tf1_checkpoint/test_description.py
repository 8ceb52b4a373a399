"""``tf1_checkpoint.description``: the JSON description of a checkpoint's model, read back as
written (a guessed one round-trips through ``to_dict``) and refused, by key, when malformed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tests.support.tf1_shipped import model_dir
from tf1_checkpoint import DescriptionError, guess_description, load_description


def test_description_round_trips_through_json(model_name: str) -> None:
    guessed = guess_description(model_dir(model_name))
    reloaded = load_description(guessed.to_dict())
    assert reloaded == dataclasses.replace(guessed, notes=())


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ({"cells": []}, "'cells' must be a non-empty list"),
        ({"cells": [{"type": "GRUCell"}]}, "'GRUCell' is not supported"),
        ({"cells": [{"num_units": "32"}]}, "'num_units' must be int"),
        ({"cells": [{"num_units": True}]}, "'num_units' must be int"),
        ({"cells": [{"direction": "up"}]}, "direction must be 'fw' or 'bw'"),
        ({"cells": [{}], "labels": "123"}, "'labels' must be a list of strings"),
        ({"cells": [{}], "topology": "sideways"}, "'topology' must be one of stacked, per_dir"),
        ({"cells": [{}], "topology": 2}, "'topology' must be str"),
        ({"cells": [{}], "bidirectional": "yes"}, "'bidirectional' must be bool"),
    ],
)
def test_malformed_descriptions(description: dict[str, Any], message: str) -> None:
    with pytest.raises(DescriptionError, match=message):
        load_description(description)


def test_unreadable_description_file(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(DescriptionError, match="cannot read description"):
        load_description(tmp_path / "d.json")
