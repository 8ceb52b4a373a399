"""Which input is the sequence and which the lengths, and which outputs classify
(``contract.signature``), over descriptions alone: what the configuration and the metadata say
wins, else dtypes and ranks decide, and what cannot be served is refused with what to do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from contract.model_config import ModelConfig
from contract.signature import Hints, infer_signature
from contract.spec import ContractError


@dataclass
class Arg:
    name: str
    type: str
    shape: list[Any]


X = Arg("x", "tensor(float)", ["N", "T", 40])
LENS = Arg("lens", "tensor(int64)", ["N"])
OUTPUTS = [Arg("scores", "tensor(float)", ["N", 6]), Arg("y", "tensor(float)", ["N", "T", 32])]


def config(text: str) -> Hints:
    return Hints.of(ModelConfig.parse(text), {}, None)


def parameter(key: str, value: str) -> str:
    return f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'


def test_roles_are_inferred_from_dtype_and_rank() -> None:
    signature = infer_signature([LENS, X], OUTPUTS, Hints())
    assert (signature.sequence_input, signature.lengths_input) == ("x", "lens")
    assert (signature.input_size, signature.lengths_datatype, signature.time_major) == (
        40,
        "INT64",
        False,
    )
    assert (signature.probs_output, signature.logits_output) == (None, None)
    assert "sequence input 'x': the one float rank-3 input" in signature.reasons


def test_a_model_without_an_integer_input_has_no_lengths() -> None:
    signature = infer_signature([X], OUTPUTS, Hints())
    assert signature.lengths_input is None
    assert "no lengths input: none is an integer of rank 1" in signature.reasons


def test_the_contracts_names_classify_without_being_told() -> None:
    outputs = [Arg("logits", "tensor(float)", ["b", 3]), Arg("probs", "tensor(float)", ["b", 3])]
    signature = infer_signature([X, LENS], outputs, Hints())
    assert (signature.probs_output, signature.logits_output) == ("probs", "logits")


def test_the_configuration_names_roles_and_layout() -> None:
    two = [X, Arg("aux", "tensor(float)", ["N", "T", 3])]
    hints = config(
        parameter("sequence_input", "x")
        + parameter("lengths_input", "none")
        + parameter("sequence_layout", "time_major")
        + parameter("logits_output", "scores")
    )
    with pytest.raises(ContractError, match=r"inputs \['aux'\] are neither"):
        infer_signature(two, OUTPUTS, hints)  # named, the other input is still unfed
    signature = infer_signature([X], OUTPUTS, hints)
    assert (signature.time_major, signature.logits_output) == (True, "scores")
    assert "no lengths input: the configuration says none" in signature.reasons


def test_metadata_names_roles_and_the_configuration_wins() -> None:
    metadata = {"logits_output": "y", "sequence_layout": "time_major"}
    assert infer_signature([X], OUTPUTS, Hints.of(None, metadata, None)).logits_output == "y"
    overruled = Hints.of(ModelConfig.parse(parameter("logits_output", "scores")), metadata, None)
    signature = infer_signature([X], OUTPUTS, overruled)
    assert (signature.logits_output, signature.time_major) == ("scores", True)


def test_a_label_file_names_the_classes_and_marks_the_class_output(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("cat\ndog\n\nbird\n")
    text = 'output [ { name: "scores" dims: [ 3 ] label_filename: "labels.txt" } ]'
    hints = Hints.of(ModelConfig.parse(text), {"labels": '["x", "y", "z"]'}, tmp_path)
    assert hints.labels == ["cat", "dog", "bird"]
    assert infer_signature([X], OUTPUTS, hints).probs_output == "scores"
    missing = 'output [ { name: "scores" label_filename: "gone.txt" } ]'
    with pytest.raises(ContractError, match="label_filename gone.txt"):
        Hints.of(ModelConfig.parse(missing), {}, tmp_path)


def test_config_dims_give_a_feature_size_the_graph_leaves_open() -> None:
    open_f = Arg("x", "tensor(float)", ["N", "T", "F"])
    with pytest.raises(ContractError, match="the feature size F of 'x' is not fixed"):
        infer_signature([open_f], OUTPUTS, Hints())
    text = 'max_batch_size: 4 input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 7 ] } ]'
    assert infer_signature([open_f], OUTPUTS, config(text)).input_size == 7
    assert config(text).max_batch_size == 4
    assert config("name: 'm'").max_batch_size == 1  # max_batch_size 0: Triton does not batch it


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('input [ { name: "x" data_type: TYPE_FP16 } ]',
         "config.pbtxt gives input 'x' data_type TYPE_FP16; the graph takes tensor(float)"),
        ('max_batch_size: 8 input [ { name: "x" dims: [ -1, 41 ] } ]',
         "config.pbtxt gives input 'x' dims [-1, 41]"),
        ('input [ { name: "x" dims: [ -1, 40 ] } ]',  # max_batch_size 0: dims are whole shapes
         "dims [-1, 40] (max_batch_size 0)"),
        (parameter("sequence_input", "inputs"), "sequence input is given as 'inputs'"),
        (parameter("lengths_input", "lengths"), "lengths input is given as 'lengths'"),
        (parameter("probabilities_output", "p"), "probabilities_output is given as 'p'"),
        (parameter("sequence_layout", "sideways"), "sequence_layout must be one of"),
    ],
)  # fmt: skip
def test_a_configuration_that_contradicts_the_graph_is_refused(text: str, words: str) -> None:
    with pytest.raises(ContractError) as raised:
        infer_signature([X, LENS], OUTPUTS, config(text))
    assert words in str(raised.value)


def test_fixed_axes_are_refused_with_how_to_export_them() -> None:
    fixed = Arg("x", "tensor(float)", [1, 20, 40])
    with pytest.raises(ContractError) as raised:
        infer_signature([fixed], OUTPUTS, Hints())
    assert "fixed batch size 1" in str(raised.value)
    assert "dynamic_axes={'x': {0: 'batch', 1: 'time'}}" in str(raised.value)
