"""``export.examples``: the example sequences written next to a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.examples import EXAMPLES_FILENAME, write_examples, write_japanese_vowels_examples
from models.data import load_japanese_vowels


def test_examples_are_written_next_to_the_model_and_read_back(tmp_path: Path) -> None:
    sequences = [np.arange(6, dtype=np.float32).reshape(3, 2), np.ones((1, 2), np.float32)]
    path = write_examples(tmp_path, "m", sequences, ["x", "y"], source="here", names=["a", "b"])
    assert path == tmp_path / "m" / EXAMPLES_FILENAME
    body = json.loads(path.read_text())
    assert body["source"] == "here"
    assert [(e["name"], e["label"]) for e in body["examples"]] == [("a", "x"), ("b", "y")]
    assert body["examples"][0]["sequence"] == [[0, 1], [2, 3], [4, 5]]
    assert not list(path.parent.glob("*.partial"))


def test_labels_must_match_the_sequences(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 sequences but 1 labels"):
        write_examples(tmp_path, "m", [np.ones((1, 2))] * 2, ["x"], source="here")


def test_japanese_vowels_examples_are_the_first_test_utterance_of_each_class(
    tmp_path: Path,
) -> None:
    body = json.loads(write_japanese_vowels_examples(tmp_path, "bilstm").read_text())
    test = load_japanese_vowels("test")
    assert [e["label"] for e in body["examples"]] == list(test.labels)
    for example in body["examples"]:
        index = int(example["name"].rsplit("#", 1)[1])
        assert test.labels[int(test.targets[index])] == example["label"]
        assert not any(test.labels[int(t)] == example["label"] for t in test.targets[:index])
        np.testing.assert_array_equal(
            np.array(example["sequence"], np.float32), test.sequences[index]
        )
