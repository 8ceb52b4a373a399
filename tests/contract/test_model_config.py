"""Reading Triton's ``config.pbtxt`` (``contract.model_config``): the protobuf text format, the
fields the service uses, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.model_config import ConfigError, ModelConfig, TensorConfig, parse_text_proto
from export.repository import triton_config
from models.architectures import LSTMClassifierConfig

TRITON_EXAMPLE = """
# A config as Triton's documentation writes them.
name: "text_lstm"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "x"
    data_type: TYPE_FP32
    dims: [ -1, 40 ]
  },
  {
    name: "lens"
    data_type: TYPE_INT64
    dims: [ 1 ]
    reshape: { shape: [ ] }
  }
]
output [
  {
    name: "scores"
    data_type: TYPE_FP32
    dims: [ 6 ]
    label_filename: "labels.txt"
  }
]
instance_group [ { count: 2 kind: KIND_GPU gpus: [ 0, 1 ] } ]
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }
parameters { key: "sequence_layout" value: { string_value: "time_major" } }
parameters: {
  key: "logits_output"
  value: { string_value: 'scores' }
}
"""


def test_a_triton_config_is_read_into_what_the_service_uses() -> None:
    config = ModelConfig.parse(TRITON_EXAMPLE)
    assert (config.name, config.platform, config.max_batch_size) == (
        "text_lstm",
        "onnxruntime_onnx",
        8,
    )
    assert config.inputs == (
        TensorConfig("x", "TYPE_FP32", (-1, 40)),
        TensorConfig("lens", "TYPE_INT64", (1,)),
    )
    assert config.outputs == (TensorConfig("scores", "TYPE_FP32", (6,), "labels.txt"),)
    assert config.parameters == {"sequence_layout": "time_major", "logits_output": "scores"}
    assert config.inputs[0].whole_dims(batched=True) == [-1, -1, 40]  # the batch axis back
    assert config.inputs[0].whole_dims(batched=False) == [-1, 40]


def test_the_parser_keeps_every_field_and_nesting() -> None:
    message = parse_text_proto(TRITON_EXAMPLE)
    group = message["instance_group"][0]
    assert (group["count"], group["kind"], group["gpus"]) == ([2], ["KIND_GPU"], [0, 1])
    batching = message["dynamic_batching"][0]
    assert batching["preferred_batch_size"] == [4, 8]
    assert message["input"][1]["reshape"] == [{"shape": []}]


def test_scalars_escapes_and_angle_brackets() -> None:
    message = parse_text_proto(
        'a: -3 b: 2.5e-1 c: true d: "tab\\there" e < f: 1 > g: 1.0f h: "q\\"uote"'
    )
    assert message == {
        "a": [-3],
        "b": [0.25],
        "c": [True],
        "d": ["tab\there"],
        "e": [{"f": [1]}],
        "g": [1.0],
        "h": ['q"uote'],
    }


def test_the_exporters_own_config_reads_back(tmp_path: Path) -> None:
    text = triton_config("m", LSTMClassifierConfig(12, (8,), 4), max_batch_size=32)
    config = ModelConfig.parse(text)
    assert config.max_batch_size == 32
    assert [t.name for t in config.inputs] == ["inputs", "lengths"]
    assert [t.name for t in config.outputs] == ["logits", "probs", "outputs"]
    assert config.inputs[0].dims == (-1, 12) and config.outputs[2].dims == (-1, 8)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('name: "m"\ninput [ { name: "x" ', "the file ends"),
        (
            'name: "m"\n  max_batch_size: "eight"',
            "'max_batch_size' must be an integer, got 'eight'",
        ),
        ("input [ { data_type: TYPE_FP32 } ]", "an 'input' entry has no name"),
        ('input [ { name: "x" data_type: TYPE_COMPLEX } ]', "data_type TYPE_COMPLEX"),
        ('input [ { name: "x" dims: [ 1, "a" ] } ]', "dims must be integers"),
        ('name: "m"\n\n  @', "line 3: unexpected character '@'"),
        ('name "m"', "line 1: expected ':' or '{'"),
        ('parameters { key: "a" }', "a 'parameters' entry needs a key and one value"),
    ],
)
def test_what_cannot_be_read_is_named(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        ModelConfig.parse(text)
    assert words in str(raised.value)


def test_a_file_that_does_not_parse_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text("input [ {")
    with pytest.raises(ConfigError, match=str(path)):
        ModelConfig.read(path)
