"""``tf1_checkpoint.guess``: the description guessed from the variables alone matches the shipped
checkpoints' manifests (labels aside) and builds the same weights; what it cannot guess is
refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.tf1_bundles import bidi_lstm_tensors, uni_lstm_tensors, write_bundle
from tests.support.tf1_shipped import load_manifest, model_dir
from tf1_checkpoint import MappingError, build_model, guess_description, load_description


def test_guess_matches_manifest(model_name: str) -> None:
    manifest = load_manifest(model_name)
    guessed = guess_description(model_dir(model_name))
    from_manifest = load_description(model_dir(model_name) / "manifest.json")
    keys = ("type", "num_units", "forget_bias", "scope", "direction")
    assert [[getattr(c, k) for k in keys] for c in guessed.cells] == [
        [cell.get(k) for k in keys] for cell in manifest["cells"]
    ]
    assert (guessed.bidirectional, guessed.input_depth, guessed.num_classes) == (
        from_manifest.bidirectional,
        manifest["input_depth"],
        manifest["num_classes"],
    )
    assert (guessed.head_weights, guessed.head_bias) == ("softmax/W", "softmax/b")
    # Only a bidirectional stack of several layers has a wiring to tell (from the kernels).
    assert guessed.topology == manifest.get("topology")
    assert any("forget_bias" in note for note in guessed.notes)
    # Guessed (labels aside) or described, the weights are the same.
    guessed_model = build_model(model_dir(model_name))
    manifest_file = model_dir(model_name) / "manifest.json"
    described = build_model(model_dir(model_name), manifest_file).state_dict()
    for key, value in guessed_model.state_dict().items():
        torch.testing.assert_close(value, described[key], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"dense/kernel": np.zeros((3, 2), np.float32)}, "no LSTM kernels found"),
        (
            uni_lstm_tensors() | {"encoder/rnn/lstm_cell/kernel": np.zeros((7, 16), np.float32)},
            "several LSTM networks",
        ),
        (
            bidi_lstm_tensors(4, 4) | {"bidirectional_rnn/fw/lstm_cell/w_f_diag": np.zeros(4)},
            "peephole",
        ),
    ],
)
def test_guess_refusals(tmp_path: Path, tensors, message: str) -> None:
    prefix = write_bundle(tmp_path / "m", tensors)
    with pytest.raises(MappingError, match=message):
        build_model(prefix)
