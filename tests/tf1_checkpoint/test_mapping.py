"""``tf1_checkpoint.mapping``: the shipped TF 1.x checkpoints become ``LSTMClassifier``s that
reproduce TensorFlow's recorded outputs and test accuracy; what cannot map is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.architectures import LSTMClassifier, LSTMClassifierConfig, reference_forward
from models.data import load_japanese_vowels
from padding import pad_sequences
from tests.support.tf1_bundles import bidi_lstm_tensors, uni_lstm_tensors, write_bundle
from tests.support.tf1_shipped import load_expected, load_manifest, model_dir
from tf1_checkpoint import (
    MappingError,
    build_model,
    guess_description,
    map_variables,
)

TOLERANCE = 1e-5


def _shipped_model(name: str) -> LSTMClassifier:
    return build_model(model_dir(name), model_dir(name) / "manifest.json")


def _tf_arrays(name: str, out: Any) -> dict[str, np.ndarray]:
    """The model's outputs under expected.npz's names (states are (dirs, B, H) per layer):
    bidirectional, the top layer's ``final_{c,h}_{fw,bw}`` and, with several layers, every
    layer's ``final_{c,h}_{n}_{fw,bw}``."""
    arrays = {"logits": out.logits, "probs": out.probs}
    if load_manifest(name)["bidirectional"]:
        half = out.outputs.shape[2] // 2
        arrays |= {"outputs_fw": out.outputs[..., :half], "outputs_bw": out.outputs[..., half:]}
        for d, way in enumerate(("fw", "bw")):
            top = out.states[-1]
            arrays |= {f"final_c_{way}": top.c[d], f"final_h_{way}": top.h[d]}
            for n, state in enumerate(out.states if len(out.states) > 1 else ()):
                arrays |= {f"final_c_{n}_{way}": state.c[d], f"final_h_{n}_{way}": state.h[d]}
    else:
        arrays["outputs"] = out.outputs
        for n, state in enumerate(out.states):
            arrays |= {f"final_c_{n}": state.c[0], f"final_h_{n}": state.h[0]}
    return {key: value.detach().numpy() for key, value in arrays.items()}


# -- the shipped checkpoints reproduce TensorFlow ---------------------------------------------


@pytest.mark.parametrize("path", ["forward", "reference_forward"])
def test_reproduces_tensorflow_outputs(model_name: str, path: str) -> None:
    expected = load_expected(model_name)
    model = _shipped_model(model_name)
    inputs = torch.from_numpy(expected["inputs"])
    lengths = torch.from_numpy(expected["lengths"])
    # The batch is padded with 1000.0, so any leak of padding into a result would show.
    assert float(expected["pad_value"]) == 1000.0
    padded = np.arange(inputs.shape[1])[None, :] >= expected["lengths"][:, None]
    assert (expected["inputs"][padded] == 1000.0).all()
    with torch.no_grad():
        out = (
            model(inputs, lengths)
            if path == "forward"
            else reference_forward(model, inputs, lengths)
        )
    actual = _tf_arrays(model_name, out)
    wanted = {k for k in expected if k.startswith(("logits", "probs", "outputs", "final_"))}
    assert set(actual) == wanted
    for key in sorted(wanted):
        np.testing.assert_allclose(actual[key], expected[key], rtol=0, atol=TOLERANCE, err_msg=key)
    assert (actual["outputs" if "outputs" in actual else "outputs_fw"][padded] == 0).all()
    np.testing.assert_array_equal(actual["logits"].argmax(1), expected["logits"].argmax(1))


def test_reaches_recorded_test_accuracy(model_name: str) -> None:
    try:
        test = load_japanese_vowels("test")
    except FileNotFoundError as error:
        pytest.skip(str(error))
    manifest = load_manifest(model_name)
    model = _shipped_model(model_name)
    assert model.config.labels == test.labels == tuple(manifest["labels"])
    inputs, lengths = pad_sequences(test.sequences)
    with torch.no_grad():
        logits = model(torch.from_numpy(inputs), torch.from_numpy(lengths)).logits
    correct = int((logits.argmax(1).numpy() == test.targets).sum())
    assert (correct, len(test)) == (manifest["test_correct"], manifest["test_size"])


def test_config_follows_manifest(model_name: str) -> None:
    manifest = load_manifest(model_name)
    config = _shipped_model(model_name).config
    sizes = [cell["num_units"] for cell in manifest["cells"] if cell.get("direction") != "bw"]
    assert config == LSTMClassifierConfig(
        input_size=manifest["input_depth"],
        layer_sizes=tuple(sizes),
        num_classes=manifest["num_classes"],
        bidirectional=manifest["bidirectional"],
        labels=tuple(manifest["labels"]),
        forget_bias=1.0,
        topology=manifest.get("topology", "stacked"),
    )
    assert not _shipped_model(model_name).training


# -- short-hand descriptions ------------------------------------------------------------------


def test_short_hand_written_descriptions() -> None:
    labels = [str(k) for k in range(1, 10)]
    basic = build_model(model_dir("basic_lstm"), {"cells": [{"num_units": 32}], "labels": labels})
    assert basic.config.layer_sizes == (32,) and basic.config.labels == tuple(labels)
    # Bidirectional without directions: each cell stands for both directions of a layer.
    bidi = build_model(model_dir("bidi_lstm"), {"bidirectional": True, "cells": [{}]})
    assert bidi.config.bidirectional and bidi.config.labels[0] == "0"
    multi = build_model(
        model_dir("multi_lstm"),
        {"cells": [{"type": "LSTMCell"}, {"type": "tf.nn.rnn_cell.LSTMCell"}]},
    )
    assert multi.config.layer_sizes == (32, 48)


# -- refusals on the shipped checkpoints -------------------------------------------------------


def _manifest_with(name: str, **changes: Any) -> dict[str, Any]:
    manifest = load_manifest(name)
    cell_changes = changes.pop("cell", None)
    if cell_changes:
        manifest["cells"][-1] |= cell_changes
    return manifest | changes


@pytest.mark.parametrize(
    ("name", "changes", "message"),
    [
        ("multi_lstm", {"cell": {"forget_bias": 0.0}}, "different forget_bias values"),
        ("multi_lstm", {"cell": {"use_peepholes": True}}, "use_peepholes=True is not supported"),
        ("multi_lstm", {"cell": {"num_proj": 16}}, "num_proj=16 is not supported"),
        ("multi_lstm", {"cell": {"cell_clip": 3.0}}, "cell_clip=3.0 is not supported"),
        ("basic_lstm", {"cell": {"activation": "relu"}}, "only tanh"),
        ("basic_lstm", {"cell": {"num_units": 64}}, "says 64 units"),
        ("basic_lstm", {"cell": {"scope": "rnn/other_cell"}}, "no LSTM kernel under rnn/other"),
        ("basic_lstm", {"input_depth": 13}, r"expected \[13 \+ 32, 128\]"),
        ("basic_lstm", {"num_classes": 10}, "says 10 classes"),
        ("basic_lstm", {"labels": ["a", "b"]}, "2 labels for 9 classes"),
        ("basic_lstm", {"head_weights": "softmax/b"}, "give both"),
        ("basic_lstm", {"head_weights": "x/W", "head_bias": "x/b"}, "'x/W' is not in"),
        ("basic_lstm", {"bidirectional": True}, "with a 'scope' must also name their 'direction'"),
        ("bidi_lstm", {"bidirectional": False}, "direction 'bw' but 'bidirectional' is false"),
        ("bidi_lstm", {"cell": {"direction": "fw"}}, "2 forward cell"),
        ("bidi_lstm", {"cell": {"direction": None}}, "every cell a 'direction'"),
    ],
)
def test_unmappable_descriptions(name: str, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        map_variables(model_dir(name), _manifest_with(name, **changes))


# -- synthetic checkpoints: other layouts and refusals -----------------------------------------


def _tf_weights(model: LSTMClassifier) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """``[layer][direction] = (kernel, bias)`` of a model, TF layout."""
    fw, bw = model.to_tf_cells()
    cells = list(zip(fw, bw, strict=True)) if bw else [(cell,) for cell in fw]
    return [[(c.kernel.detach().numpy(), c.bias.detach().numpy()) for c in pair] for pair in cells]


def _with_slots(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    slots = {f"{k}/{s}": np.zeros_like(v) for k, v in tensors.items() for s in ("Adam", "Adam_1")}
    return tensors | slots | {"global_step": np.array(7, np.int64)}


@pytest.mark.parametrize(
    ("bidirectional", "sizes", "scope", "names"),
    [
        (False, (5,), "rnn/lstm_cell", ("kernel", "bias")),
        (False, (5, 6, 4), "rnn/multi_rnn_cell/cell_{n}/basic_lstm_cell", ("weights", "biases")),
        (True, (5,), "bidirectional_rnn/{d}/lstm_cell", ("kernel", "bias")),
        (
            True,
            (5, 3),
            "stack_bidirectional_rnn/cell_{n}/bidirectional_rnn/{d}/lstm_cell",
            ("kernel", "bias"),
        ),
        (  # one MultiRNNCell per direction: the per_direction topology
            True,
            (5, 3, 4),
            "bidirectional_rnn/{d}/multi_rnn_cell/cell_{n}/basic_lstm_cell",
            ("kernel", "bias"),
        ),
    ],
)
def test_round_trip_through_tf_layouts(
    tmp_path: Path, bidirectional: bool, sizes: tuple[int, ...], scope: str, names: tuple[str, str]
) -> None:
    torch.manual_seed(0)
    topology = "per_direction" if "multi_rnn_cell" in scope and bidirectional else "stacked"
    config = LSTMClassifierConfig(
        3, sizes, 4, bidirectional=bidirectional, forget_bias=0.5, topology=topology
    )
    original = LSTMClassifier(config).eval()
    tensors = {}
    for n, directions in enumerate(_tf_weights(original)):
        for d, (kernel, bias) in zip(("fw", "bw"), directions, strict=False):
            prefix = scope.format(n=n, d=d)
            tensors |= {f"{prefix}/{names[0]}": kernel, f"{prefix}/{names[1]}": bias}
    tensors |= {
        "dense/kernel": original.head.weight.detach().numpy().T.copy(),
        "dense/bias": original.head.bias.detach().numpy(),
    }
    prefix = write_bundle(tmp_path / "model.ckpt", _with_slots(tensors), num_shards=2)

    guessed = guess_description(prefix)
    assert (guessed.head_weights, guessed.head_bias) == ("dense/kernel", "dense/bias")
    description = guessed.to_dict()
    for cell in description["cells"]:
        cell["forget_bias"] = 0.5
    imported = build_model(prefix, description)
    assert imported.config == config

    inputs = torch.randn(4, 6, 3)
    lengths = torch.tensor([6, 1, 3, 5])
    with torch.no_grad():
        want, got = original(inputs, lengths), imported(inputs, lengths)
    torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.outputs, want.outputs, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        (uni_lstm_tensors(**{"rnn/lstm_cell/w_f_diag": (4,)}), "peephole"),
        (uni_lstm_tensors(**{"rnn/lstm_cell/projection/kernel": (4, 2)}), "projection"),
        (uni_lstm_tensors(**{"embedding/W": (10, 3)}), "not used by the description: embedding/W"),
        (uni_lstm_tensors(**{"rnn/lstm_cell/kernel": (7, 15)}), "are not an LSTM kernel"),
        (uni_lstm_tensors() | {"softmax/W": np.zeros((4, 2), np.int32)}, "must be floating point"),
    ],
)
def test_unmappable_checkpoints(tmp_path: Path, tensors, message: str) -> None:
    prefix = write_bundle(tmp_path / "m", _with_slots(tensors))
    with pytest.raises(MappingError, match=message):
        build_model(prefix, {"cells": [{"type": "LSTMCell"}]})


def test_different_direction_widths_are_refused(tmp_path: Path) -> None:
    prefix = write_bundle(tmp_path / "m", bidi_lstm_tensors(4, 5))
    description = {"cells": [{"type": "LSTMCell"}], "bidirectional": True}
    with pytest.raises(MappingError, match="forward cell has 4 units, backward 5"):
        build_model(prefix, description)
    with pytest.raises(MappingError, match="forward cell has 4 units, backward 5"):
        build_model(prefix)  # guessed


def _per_direction_tensors(rows_1: int) -> dict[str, np.ndarray]:
    """bidirectional_dynamic_rnn(MultiRNNCell, MultiRNNCell) names, F=3, H=(4, 4), C=2;
    layer 1's kernels have ``rows_1`` rows (4 + 4 per direction; 8 + 4 if stacked)."""
    rng = np.random.default_rng(2)
    tensors = {"softmax/W": np.zeros((8, 2), np.float32), "softmax/b": np.zeros(2, np.float32)}
    for d in ("fw", "bw"):
        for n, rows in ((0, 3 + 4), (1, rows_1)):
            scope = f"bidirectional_rnn/{d}/multi_rnn_cell/cell_{n}/lstm_cell"
            tensors[f"{scope}/kernel"] = rng.standard_normal((rows, 16), np.float32)
            tensors[f"{scope}/bias"] = np.zeros(16, np.float32)
    return tensors


def test_separate_stacks_are_told_apart_by_the_kernels(tmp_path: Path) -> None:
    """No topology in the description: layer 1's kernel shape says per_direction."""
    prefix = write_bundle(tmp_path / "m", _per_direction_tensors(4 + 4))
    described = build_model(prefix, {"bidirectional": True, "cells": [{"type": "LSTMCell"}] * 2})
    assert described.config.topology == "per_direction"
    assert guess_description(prefix).topology == "per_direction"
    assert build_model(prefix).config == described.config


@pytest.mark.parametrize(
    ("rows_1", "description", "message"),
    [
        (4 + 4, {"topology": "stacked"}, "reads only its own direction's layer below"),
        (4 + 4, {"bidirectional": False}, "direction 'bw' but 'bidirectional' is false"),
        (5 + 4, {}, "reads 5 inputs, neither its own direction's layer below"),
        (5 + 4, {"topology": "per_direction"}, r"expected \[4 \+ 4, 16\]"),
    ],
)
def test_wiring_the_kernels_do_not_show_is_refused(
    tmp_path: Path, rows_1: int, description: dict[str, Any], message: str
) -> None:
    prefix = write_bundle(tmp_path / "m", _per_direction_tensors(rows_1))
    guessed = guess_description(prefix).to_dict()
    with pytest.raises(MappingError, match=message):
        build_model(prefix, guessed | description)


def test_topology_per_direction_is_refused_for_a_unidirectional_description() -> None:
    with pytest.raises(MappingError, match="'per_direction' is for bidirectional models only"):
        description = _manifest_with("multi_lstm", topology="per_direction")
        map_variables(model_dir("multi_lstm"), description)


def test_ignore_variables(tmp_path: Path) -> None:
    prefix = write_bundle(tmp_path / "m", uni_lstm_tensors(**{"aux/W": (2, 2), "aux/b": (2,)}))
    description = {"cells": [{"type": "LSTMCell"}], "ignore_variables": ["aux/*"]}
    assert build_model(prefix, description).config.layer_sizes == (4,)


def test_ambiguous_head_needs_names(tmp_path: Path) -> None:
    tensors = uni_lstm_tensors() | {"out2/W": np.zeros((4, 2), np.float32), "out2/b": np.zeros(2)}
    tensors = {k.replace("softmax", "out1"): v for k, v in tensors.items()}
    prefix = write_bundle(tmp_path / "m", tensors)
    guessed = guess_description(prefix)
    assert guessed.head_weights is None and "2 candidates" in guessed.notes[-1]
    with pytest.raises(MappingError, match="candidates: out1/W \\+ out1/b; out2/W \\+ out2/b"):
        build_model(prefix, guessed)
    description = guessed.to_dict() | {
        "head_weights": "out2/W",
        "head_bias": "out2/b",
        "ignore_variables": ["out1/*"],
    }
    assert build_model(prefix, description).config.num_classes == 2
